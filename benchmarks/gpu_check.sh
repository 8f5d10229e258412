#!/bin/bash
# The GPU check of docs/performance.md, in one command: a short 256 px training of both shipped configs
# under mpirun (bf16), sampling of 8 pairs over all 1000 steps in bf16 and fp32, then the benchmark.
#   DATA=../shared/data/magnetic_tile_dev OUT=/tmp/gpu_check bash benchmarks/gpu_check.sh
# Optional: WHEELS=DIR installs the wheels in DIR first (a machine without blobfile/mpich); BENCH_S limits
# the benchmark's seconds (default 600). Everything it prints is also written to $OUT/log.txt.
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/gpu_check}; DATA=${DATA:-../shared/data/magnetic_tile_dev}; R=$OUT/runs
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if [ -n "${WHEELS:-}" ]; then $PY -m pip install -q --no-index --no-deps --no-cache-dir "$WHEELS"/*.whl; fi
$PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
for m in large small; do
  echo "=== train $m (mpirun -n 1, bf16, 40 iterations)"
  /usr/bin/time -f "wall %e s" timeout 300 env PYTHON="$PY" sh train_$m.sh --work_dir "$R/$m" \
    --data_dir "$DATA" train.iterations=40 train.save_ckpt_interval=40 train.max_images=0 \
    train.precision=bf16 train.log_interval=10
done
for p in bf16 fp32; do
  echo "=== sample 8 pairs, all 1000 steps, switch 400, $p"
  /usr/bin/time -f "wall %e s" timeout 300 env PYTHON="$PY" sh inference.sh --large_recep "$R/large" \
    --small_recep "$R/small" --step_inference 400 --num_samples 8 --batch_size 8 --precision $p \
    --sample_dir "$R/s_$p" --no_progress
done
echo "=== bench shipped cuda"
timeout "${BENCH_S:-600}" $PY benchmarks/bench.py --preset shipped --device cuda --no-compile \
  --json "$OUT/bench.json"
echo "bench rc $?"; date -u
