#!/bin/bash
# The CPU recipe and its ablations (docs/results.md run 3): trained at once on one GPU, then 200-sample
# sets from each. Run from anywhere; DATA, R (runs), OUT (logs + a tarball of the sets), DEV, TRAIN_S.
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/abl_out}; mkdir -p "$OUT"; R=${R:-/tmp/abl}; mkdir -p $R/logs
DATA=${DATA:-../shared/data/magnetic_tile_dev}; PY=${PYTHON:-python}; DEV=${DEV:-cuda}; TRAIN_S=${TRAIN_S:-330}; SAMPLE_S=${SAMPLE_S:-150}
exec > >(tee -a "$OUT/log.txt") 2>&1
date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
t0=$(date +%s)
W0="train.mask_class_weight_power=0 train.mask_class_weight_cap=null"
W5="train.mask_class_weight_cap=5"
C0="data.params.crop=null data.params.crop_random=null"
G="data.params.num_good=20"
pids=""
train() {  # name model overrides...
  local v=$1 m=$2; shift 2
  timeout $TRAIN_S $PY scripts/train.py --config configs/cpu_$m.yaml --work_dir $R/$v/$m --data_dir $DATA \
    --device $DEV train.max_images=0 train.keep_checkpoints=null train.save_ckpt_interval=250 "$@" \
    > $R/logs/train_${v}_$m.txt 2>&1 &
  pids="$pids $!"
}
train R large; train R small
train W0 large $W0; train W0 small $W0
train W5 large $W5; train W5 small $W5
train C0 small $C0
train G large $G; train G small $G
wait $pids
echo "train stage $(( $(date +%s) - t0 )) s"
last() { ls $R/$1/$2/checkpoints/ 2>/dev/null | grep -o '[0-9]\{6\}' | sort | tail -1; }
common() {  # the newest step every variant of model $1 reached
  local m=$1 s best=999999; shift
  for v in "$@"; do s=$(last $v $m); s=${s:-000000}; [ $((10#$s)) -lt $((10#$best)) ] && best=$s; done; echo $best; }
SL=$(common large R W0 W5 G); SS=$(common small R W0 W5 C0 G)
for v in R W0 W5 G; do echo "$v/large newest $(last $v large)"; done
for v in R W0 W5 C0 G; do echo "$v/small newest $(last $v small)"; done
echo "sampling from large step $SL, small step $SS"
for v in R W0 W5 C0 G; do for m in large small; do tail -n 1 $R/$v/$m/progress.csv 2>/dev/null | sed "s|^|$v/$m last row: |"; done; done
S="$PY scripts/sample.py --step_inference 400 --timestep_respacing 50 --batch_size 100 --device $DEV --no_progress"
pids=""
sample() {  # name large-variant small-variant args...
  local name=$1 lv=$2 sv=$3; shift 3
  timeout $SAMPLE_S $S --large_recep $R/$lv/large/checkpoints/ckpt_$SL.pt \
    --small_recep $R/$sv/small/checkpoints/ckpt_$SS.pt --sample_dir $R/s/$name "$@" > $R/logs/s_$name.txt 2>&1 &
  pids="$pids $!"
}
for v in R W0 W5 C0 G; do
  lv=$v; [ $v = C0 ] && lv=R
  sample ${v}_joint $lv $v --num_samples 200
  sample ${v}_raw $lv $v --num_samples 200 --use_ema false
  sample ${v}_bal $lv $v --num_samples 200 --keep balanced --max_candidates 4000
  sample ${v}_inpaint $lv $v --mode inpaint --mask_source train --per_class 40 --data_dir $DATA
done
wait $pids
echo "sample stage done at $(( $(date +%s) - t0 )) s"
for f in $R/logs/s_*.txt; do echo "--- $f"; grep -vE "^\s*$" $f | tail -14; done
cd $R && tar czf /tmp/abl.tgz --exclude=masks_rgb --exclude=grid.png s logs */*/progress.csv */*/config.yaml
ls -la /tmp/abl.tgz; split -b 15M /tmp/abl.tgz $OUT/abl.tgz.part-
echo "total $(( $(date +%s) - t0 )) s"; date -u
