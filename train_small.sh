#!/bin/sh
# Train the small model: one process per GPU under mpirun. Extra arguments are passed to scripts/train.py
# (a later --config wins over the default). NUM_GPUS=4 sh train_small.sh --work_dir runs/small --data_dir DATA
# Several nodes: MPIRUN_ARGS="--hostfile hosts" NUM_GPUS=16 sh train_small.sh ...
here=$(cd "$(dirname "$0")" && pwd) || exit 1
exec ${MPIRUN:-mpirun} -n "${NUM_GPUS:-1}" ${MPIRUN_ARGS:-} ${PYTHON:-python} "$here"/scripts/train.py --config "$here"/configs/small.yaml "$@"
