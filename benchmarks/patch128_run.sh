#!/bin/bash
# docs/results.md run 4: the CPU patch recipe's sets and the benchmark at 128 px, on this checkout.
# Needs the two generators trained as README "A CPU patch recipe" says, in $R/small and $R/large.
# Stages (STAGE=sample|seams|evaluate|all): the 100-pair benchmark set, three 25-pair sets that compare the
# large model skipped / downscaled and the band harmonized or not, their seam figures, the benchmark.
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd "$(dirname "$0")/.." || exit 1
R=${R:-$HOME/defect-gen-runs/p128}; DATA=${DATA:-../shared/data/magnetic_tile_dev}; PY=${PYTHON:-python}
SEEDS=${SEEDS:-10}; WORKERS=${WORKERS:-2}; STAGE=${STAGE:-all}
S="$PY scripts/sample.py --large_recep $R/large --small_recep $R/small --step_inference 400 \
   --timestep_respacing 50 --batch_size 25 --device cpu --no_progress --mode inpaint --mask_source train \
   --size 128 --data_dir $DATA"

if [ "$STAGE" = sample ] || [ "$STAGE" = all ]; then
  $S --per_class ${PER_CLASS:-20} --sample_dir $R/s/inpaint128 || exit 1                    # the benchmark set
  $S --per_class ${PER_CLASS_CMP:-5} --sample_dir $R/s/skip25 || exit 1                         # the defaults
  $S --per_class ${PER_CLASS_CMP:-5} --large_at_size downscale --sample_dir $R/s/down25 || exit 1
  $S --per_class ${PER_CLASS_CMP:-5} --harmonize false --sample_dir $R/s/raw25 || exit 1
fi
if [ "$STAGE" = seams ] || [ "$STAGE" = all ]; then
  $PY benchmarks/inpaint_seams.py $R/s/skip25 $R/s/down25 $R/s/raw25 $R/s/inpaint128 || exit 1
fi
if [ "$STAGE" = evaluate ] || [ "$STAGE" = all ]; then
  $PY scripts/evaluate.py --data_dir $DATA --num_train_per_type 5 --synthetic inpaint128=$R/s/inpaint128 \
    --synthetic_count $((5 * ${PER_CLASS:-20})) --synthetic_share 0.25 --resolution 128 --seeds $SEEDS \
    --baselines real,copy_paste --regimes d,e --device cpu --workers $WORKERS --out $R/eval128
fi
