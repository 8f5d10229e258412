"""
Generate image + mask pairs: a thin wrapper of defect_gen.commands.sample (defect-gen-sample).

Run it with --help for the usage; the shell wrappers (train_*.sh, inference.sh) call this file.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The code lives in defect_gen.commands (console command defect-gen-*); the shell wrappers run this.
from defect_gen.commands.cli import run_cli  # noqa: E402
from defect_gen.commands.sample import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(run_cli(main))
