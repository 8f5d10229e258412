#!/bin/sh
# Train the large model: one process per GPU under mpirun. Extra arguments are passed to scripts/train.py
# (a later --config wins over the default). NUM_GPUS=4 sh train_large.sh --work_dir runs/large --data_dir DATA
# Several nodes: MPIRUN_ARGS="--hostfile hosts" NUM_GPUS=16 sh train_large.sh ...
here=$(cd "$(dirname "$0")" && pwd) || exit 1
exec ${MPIRUN:-mpirun} -n "${NUM_GPUS:-1}" ${MPIRUN_ARGS:-} ${PYTHON:-python} "$here"/scripts/train.py --config "$here"/configs/large.yaml "$@"
