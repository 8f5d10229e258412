"""
Check a defect dataset folder and print what training will read; optionally rewrite it in the official layout.

    python scripts/prepare_data.py DATA_DIR [--num_defect K] [--classes a,b,c] [--num_image_train N]
                                   [--write_official OUT]

Prints the layout, the defect types with their class ids, pair counts, mask coverage and every problem
found. Exits 2 when there is any problem (nothing is written then).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.commands.prepare_data import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
