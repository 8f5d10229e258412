"""
Train a Defect-Gen model (large or small, as the config says).

    python scripts/train.py --config configs/large.yaml --work_dir runs/large --data_dir DATA --num_defect 5
    mpirun -n 4 python scripts/train.py ...          # one process per GPU
    python scripts/train.py ... train.iterations=20 data.params.resolution=64   # YAML overrides

Overrides may stand anywhere on the command line. Channels set to `auto` follow num_defect (K + 4);
without --num_defect or data.params.num_defect, K is the number of classes the dataset shows.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The code lives in defect_gen.commands (console command defect-gen-*); the shell wrappers run this.
from defect_gen.cli import run_cli  # noqa: E402
from defect_gen.commands.train import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    run_cli(main)
