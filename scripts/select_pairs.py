"""
Keep the best pairs of a sample folder in a new one: a thin wrapper of defect_gen.commands.select
(defect-gen-select). Run it with --help for the usage.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.commands.cli import run_cli  # noqa: E402
from defect_gen.commands.select import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(run_cli(main))
