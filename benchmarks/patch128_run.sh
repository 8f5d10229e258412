#!/bin/bash
# docs/results.md runs 4 to 9: the CPU patch recipe's sets and the benchmark at 128 px, this checkout.
# Needs the two generators trained as README "A CPU patch recipe" says, in $R/small and $R/large, and
# for the longer stage the small one trained on to 9000 steps in $R/small9k; stages replicate and pool400
# train their own small model, in $R/recipe.
# Stages (STAGE=sample|seams|tune|evaluate|texture|sweep|band|longer|flip8|pool200|realistic|confirm20|
#         replicate|pool400|all):
#   sample    the benchmark set (PER_CLASS x 5 pairs) and three small sets that compare the large model
#             skipped / downscaled and the band harmonized or not
#   seams     their seam figures
#   tune      the baselines' settings by cross-validation over the training pairs (never the reported
#             images): copy-paste probability x blend; the segmenter keeps its frozen defaults
#   evaluate  the verdict rows with the tuned baselines: a, a+good, c, d, e, SEEDS seeds
#   texture   the benchmark set with --good_texture true (benchmarks/add_good_texture.py: the same pairs
#             with the good image's fine texture in the drawn band) against it, row d, SEEDS seeds
#   sweep     how much synthetic data (25 / 50 pairs at share 0.25, 50 at share 0.5) and the 25
#             best-scoring pairs against 25 balanced ones, SWEEP_SEEDS seeds
#   band      the benchmark set's masks drawn with a 2 px band (--band 2) instead of the default 8:
#             realism and row d, SEEDS seeds
#   longer    from the small model trained on to 9000 steps ($R/small9k: $R/small resumed): the
#             benchmark set drawn with --band 2, and with --band 2 --mask_transform flip (each training
#             mask only mirrored, kept at its place), their realism and rows d, SEEDS seeds
#   flip8     the 9000-step model with the default 8 px band and --mask_transform flip: realism, row d
#   pool200   the README recipe's set at 4 x the size: 200 pairs (--per_class 40) from the 9000-step
#             model alone, --band 2 --mask_transform flip, under mpirun -n 2; realism, then rows d and
#             e with all 200 pairs at share 0.25, SEEDS seeds
#   realistic from that pool of 200, the N pairs (10 per class) whose defects are nearest the real
#             training pairs of their class in step and texture (--synthetic_select realistic): rows d
#             and e, and the same pairs copied by scripts/select_pairs.py (row d from the cache: the
#             same pairs give the same trainings)
#   confirm20 the verdict rows a, a+good, c and d (the README recipe's set: the select_pairs.py copy of the
#             realistic 50), then e (tuned copy-paste + the same 50), on CONFIRM_SEEDS seeds (20: seeds
#             0-9 from the cache, 10-19 new), a length fixed before any of seeds 10-19 was trained
#             (docs/results.md run 7)
#   replicate the README recipe from scratch in $R/recipe (its three commands: train the small model, draw
#             the pool of 200 under mpirun -n 2, keep the realistic 50), then rows a, a+good, c (run 4's
#             tuned settings, given as flags) and d on REPLICATE_SEEDS seeds from seed 20 (seed numbers
#             no earlier run used), then e (tuned copy-paste + the same 50); a length fixed before the
#             run (docs/results.md run 8)
#   pool400   run 8's next step: the README recipe with a pool of 400 (--per_class 80) and the realistic
#             100 of it, in $R/recipe (the small model is trained there if it is not yet), then rows a,
#             a+good, c and d (the 100 at share 0.25) on POOL400_SEEDS seeds from seed 40, seed by seed
#             (docs/results.md run 9)
# Every segmenter training is kept in $R/cache (evaluate --cache), so a stage stopped midway resumes where
# it stopped, and the stages share the rows they have in common (the baselines train once).
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd "$(dirname "$0")/.." || exit 1
R=${R:-$HOME/defect-gen-runs/p128}; DATA=${DATA:-../shared/data/magnetic_tile_dev}; PY=${PYTHON:-python}
SEEDS=${SEEDS:-10}; CONFIRM_SEEDS=${CONFIRM_SEEDS:-20}; SWEEP_SEEDS=${SWEEP_SEEDS:-$SEEDS}
REPLICATE_SEEDS=${REPLICATE_SEEDS:-20}; POOL400_SEEDS=${POOL400_SEEDS:-20}
WORKERS=${WORKERS:-2}; STAGE=${STAGE:-all}
PER_CLASS=${PER_CLASS:-10}; PER_CLASS_CMP=${PER_CLASS_CMP:-2}
SAMPLE="$PY scripts/sample.py --large_recep $R/large --step_inference 400 --timestep_respacing 50 \
   --batch_size 25 --device cpu --no_progress --mode inpaint --mask_source train --size 128 --data_dir $DATA"
S="$SAMPLE --small_recep $R/small"
E="$PY scripts/evaluate.py --data_dir $DATA --num_train_per_type 5 --resolution 128 --device cpu \
   --workers $WORKERS --cache $R/cache"
SET="inpaint128=$R/s/inpaint128"
N=$((5 * PER_CLASS))

run() { [ "$STAGE" = "$1" ] || [ "$STAGE" = all ]; }
need_mpirun() {  # the stages that sample under mpirun -n 2
  command -v mpirun >/dev/null || { echo "mpirun not found: put .venv/bin on PATH"; exit 1; }
}

if run sample; then
  $S --per_class "$PER_CLASS" --sample_dir $R/s/inpaint128 || exit 1                       # the benchmark set
  $S --per_class "$PER_CLASS_CMP" --sample_dir $R/s/skip10 || exit 1                           # the defaults
  $S --per_class "$PER_CLASS_CMP" --large_at_size downscale --sample_dir $R/s/down10 || exit 1
  $S --per_class "$PER_CLASS_CMP" --harmonize false --sample_dir $R/s/raw10 || exit 1
fi
if run seams; then
  $PY benchmarks/inpaint_seams.py $R/s/skip10 $R/s/down10 $R/s/raw10 $R/s/inpaint128 || exit 1
fi
if run tune; then
  $E --out $R/tune128 --tune --tune_grid none \
    --tune_baseline_grid "copy_paste_probability=0.5,1;copy_paste_blend=alpha,poisson;copy_paste_feather=2" \
    || exit 1
fi
if run evaluate; then
  $E --tuned $R/tune128/tune.json --synthetic $SET --synthetic_count $N --synthetic_share 0.25 \
    --seeds "$SEEDS" --baselines real,copy_paste --regimes d,e --out $R/eval128 || exit 1
fi
if run texture; then
  [ -d $R/s/texture128 ] || $PY benchmarks/add_good_texture.py $R/s/inpaint128 $R/s/texture128 || exit 1
  $PY benchmarks/inpaint_seams.py $R/s/inpaint128 $R/s/texture128 || exit 1
  $PY benchmarks/pair_realism.py --data_dir "$DATA" $R/s/inpaint128 $R/s/texture128 || exit 1
  $E --tuned $R/tune128/tune.json --synthetic $SET --synthetic texture128=$R/s/texture128 \
    --synthetic_count $N --synthetic_share 0.25 --seeds "$SEEDS" --baselines real --regimes d \
    --out $R/texture128 || exit 1
fi
if run sweep; then
  $E --tuned $R/tune128/tune.json --synthetic $SET --synthetic_count $((N / 2)),$N \
    --synthetic_share 0.25 --seeds "$SWEEP_SEEDS" --baselines real --regimes d \
    --out $R/sweep128_count || exit 1
  $E --tuned $R/tune128/tune.json --synthetic $SET --synthetic_count $N \
    --synthetic_share 0.25,0.5 --seeds "$SWEEP_SEEDS" --baselines real --regimes d \
    --out $R/sweep128_share || exit 1
  $E --tuned $R/tune128/tune.json --synthetic $SET --synthetic_count $((N / 2)) --synthetic_share 0.25 \
    --synthetic_select scored --seeds "$SWEEP_SEEDS" --baselines real --regimes d \
    --out $R/scored128 || exit 1
fi
if run band; then
  $S --per_class "$PER_CLASS" --band 2 --sample_dir $R/s/band2_128 || exit 1
  $PY benchmarks/pair_realism.py --data_dir "$DATA" --resolution 128 $R/s/inpaint128 $R/s/band2_128 \
    || exit 1
  $E --tuned $R/tune128/tune.json --synthetic band2_128=$R/s/band2_128 --synthetic_count $N \
    --synthetic_share 0.25 --seeds "$SEEDS" --baselines real,copy_paste --regimes d \
    --out $R/eval128_band2 || exit 1
fi
if run longer; then
  # both cores: the samples are the same under mpirun -n 2 (tests/test_inpaint_size.py)
  need_mpirun
  L="mpirun -n 2 $SAMPLE --small_recep $R/small9k --per_class $PER_CLASS --band 2"
  $L --sample_dir $R/s/band2_128_9k || exit 1
  $L --mask_transform flip --sample_dir $R/s/flip_128_9k || exit 1
  $PY benchmarks/pair_realism.py --data_dir "$DATA" --resolution 128 $R/s/inpaint128 $R/s/band2_128 \
    $R/s/band2_128_9k $R/s/flip_128_9k --figure $R/realism5.png || exit 1
  $E --tuned $R/tune128/tune.json --synthetic band2_128_9k=$R/s/band2_128_9k \
    --synthetic flip_128_9k=$R/s/flip_128_9k --synthetic_count $N --synthetic_share 0.25 \
    --seeds "$SEEDS" --baselines real,copy_paste --regimes d --out $R/eval128_9k || exit 1
fi
if run flip8; then
  need_mpirun
  mpirun -n 2 $SAMPLE --small_recep $R/small9k --per_class "$PER_CLASS" --mask_transform flip \
    --sample_dir $R/s/flip8_128_9k || exit 1
  $PY benchmarks/pair_realism.py --data_dir "$DATA" --resolution 128 $R/s/inpaint128 \
    $R/s/flip_128_9k $R/s/flip8_128_9k || exit 1
  $E --tuned $R/tune128/tune.json --synthetic flip8_128_9k=$R/s/flip8_128_9k --synthetic_count $N \
    --synthetic_share 0.25 --seeds "$SEEDS" --baselines real,copy_paste --regimes d \
    --out $R/eval128_flip8 || exit 1
fi
if run pool200; then
  need_mpirun
  mpirun -n 2 $PY scripts/sample.py --small_recep $R/small9k --timestep_respacing 50 --batch_size 25 \
    --device cpu --no_progress --mode inpaint --mask_source train --size 128 --data_dir $DATA \
    --per_class $((4 * PER_CLASS)) --band 2 --mask_transform flip --sample_dir $R/s/flip200_128_9k || exit 1
  $PY benchmarks/pair_realism.py --data_dir "$DATA" --resolution 128 $R/s/flip_128_9k \
    $R/s/flip200_128_9k || exit 1
  for regime in d e; do
    $E --tuned $R/tune128/tune.json --synthetic flip200_128_9k=$R/s/flip200_128_9k \
      --synthetic_count $((4 * N)) --synthetic_share 0.25 --seeds "$SEEDS" --baselines real,copy_paste \
      --regimes $regime --out $R/eval128_pool200_$regime || exit 1
  done
fi
if run realistic; then
  $E --tuned $R/tune128/tune.json --synthetic flip200_realistic=$R/s/flip200_128_9k \
    --synthetic_count $N --synthetic_select realistic --synthetic_share 0.25 --seeds "$SEEDS" \
    --baselines real,copy_paste --regimes d,e --out $R/eval128_realistic || exit 1
  [ -d $R/s/realistic50_128_9k ] || $PY scripts/select_pairs.py --source $R/s/flip200_128_9k \
    --dest $R/s/realistic50_128_9k --count $N --select realistic --data_dir "$DATA" || exit 1
  $E --tuned $R/tune128/tune.json --synthetic flip200_realistic=$R/s/realistic50_128_9k \
    --synthetic_count $N --synthetic_share 0.25 --seeds "$SEEDS" --baselines real,copy_paste \
    --regimes d --out $R/eval128_selected || exit 1
fi
if run confirm20; then
  for regime in d e; do
    out=$R/eval128_confirm20; [ $regime = e ] && out=${out}_e
    $E --tuned $R/tune128/tune.json --synthetic flip200_realistic=$R/s/realistic50_128_9k \
      --synthetic_count $N --synthetic_share 0.25 --seeds "$CONFIRM_SEEDS" --baselines real,copy_paste \
      --regimes $regime --out "$out" || exit 1
  done
fi
# The README recipe in $R/recipe with a pool of 5 x $1 pairs and its realistic $2 (stages replicate and
# pool400). train.py resumes a finished or interrupted run from its latest checkpoint.
recipe_set() {
  local Q=$R/recipe per_class=$1 count=$2
  need_mpirun
  $PY scripts/train.py --config configs/cpu_patch128.yaml --work_dir $Q/small --data_dir $DATA || exit 1
  mpirun -n 2 $PY scripts/sample.py --small_recep $Q/small --timestep_respacing 50 --mode inpaint \
    --mask_source train --per_class "$per_class" --size 128 --band 2 --mask_transform flip \
    --data_dir $DATA --no_progress --sample_dir $Q/pool$((5 * per_class)) || exit 1
  [ -d $Q/realistic$count ] || $PY scripts/select_pairs.py --source $Q/pool$((5 * per_class)) \
    --dest $Q/realistic$count --count "$count" --data_dir $DATA || exit 1
}
# run 4's tuned copy-paste settings, given as flags
TUNED_CP="--copy_paste_probability 1 --copy_paste_blend poisson --copy_paste_feather 2"

if run replicate; then
  recipe_set 40 50
  for regime in d e; do
    out=$R/eval128_run8; [ $regime = e ] && out=${out}_e
    $E $TUNED_CP --synthetic flip200_realistic=$R/recipe/realistic50 --synthetic_count 50 \
      --synthetic_share 0.25 --first_seed 20 --seeds "$REPLICATE_SEEDS" --baselines real,copy_paste \
      --regimes $regime --out "$out" || exit 1
  done
fi
if run pool400; then
  recipe_set 80 100
  $PY benchmarks/pair_realism.py --data_dir "$DATA" --resolution 128 $R/recipe/pool400 \
    $R/recipe/realistic100 || exit 1
  $E $TUNED_CP --synthetic pool400_realistic=$R/recipe/realistic100 --synthetic_count 100 \
    --synthetic_share 0.25 --first_seed 40 --seeds "$POOL400_SEEDS" --baselines real,copy_paste \
    --regimes d --out $R/eval128_run9 || exit 1
fi
