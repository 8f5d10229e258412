#!/bin/sh
# Generate image + mask pairs with a large and a small checkpoint, one process per GPU under mpirun.
# NUM_GPUS=4 sh inference.sh --large_recep L.pt --small_recep S.pt --step_inference 400 --sample_dir out
here=$(cd "$(dirname "$0")" && pwd) || exit 1
exec ${MPIRUN:-mpirun} -n "${NUM_GPUS:-1}" ${MPIRUN_ARGS:-} ${PYTHON:-python} "$here"/scripts/sample.py "$@"
