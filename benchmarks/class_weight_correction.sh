#!/bin/bash
# The --class_weight_correction sweep of docs/results.md run 3 on the CPU recipe generators (LARGE, SMALL
# checkpoints); DATA, R (sets), OUT (logs + a tarball of the sets), DEV.
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/cw_out}; mkdir -p "$OUT"; R=${R:-/tmp/cw}; mkdir -p $R/logs
DATA=${DATA:-../shared/data/magnetic_tile_dev}; PY=${PYTHON:-python}; DEV=${DEV:-cuda}
exec > >(tee -a "$OUT/log.txt") 2>&1
date -u; nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null
t0=$(date +%s)
: "${LARGE:?set LARGE and SMALL to the two checkpoints}" "${SMALL:?}"
S="$PY scripts/sample.py --large_recep $LARGE --small_recep $SMALL --step_inference 400 --timestep_respacing 50 --batch_size 100 --device $DEV --no_progress"
pids=""
run() { local name=$1; shift; timeout 200 $S --sample_dir $R/s/$name "$@" > $R/logs/$name.txt 2>&1 & pids="$pids $!"; }
for c in 0 0.25 0.5 0.75 1; do run ema_c$c --num_samples 200 --class_weight_correction $c; done
for c in 0 0.5 1; do run raw_c$c --num_samples 200 --use_ema false --class_weight_correction $c; done
for c in 0.5 0.75 1; do run bal_c$c --num_samples 200 --keep balanced --max_candidates 6000 --class_weight_correction $c; done
wait $pids
echo "sample stage $(( $(date +%s) - t0 )) s"
for f in $R/logs/*.txt; do echo "--- $f"; grep -vE "^\s*$|INFO" $f | tail -12; done
cd $R && tar czf $OUT/cw.tgz --exclude=masks_rgb --exclude=grid.png s logs; ls -la $OUT/cw.tgz
echo "total $(( $(date +%s) - t0 )) s"; date -u
