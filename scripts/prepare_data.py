"""
Inspect or convert a dataset: a thin wrapper of defect_gen.commands.prepare_data (defect-gen-prepare).

Run it with --help for the usage; the shell wrappers (train_*.sh, inference.sh) call this file.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.commands.cli import run_cli  # noqa: E402
from defect_gen.commands.prepare_data import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(run_cli(main))
