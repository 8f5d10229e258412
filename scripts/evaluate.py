"""
Does the synthetic data help segmentation on my data? Train a compact segmentation net under four
regimes — (a) real, (b) real + classic augmentation, (c) real + copy-paste, (d) real + synthetic —
with one schedule and the same seeds, score each on the held-out real pairs, and measure the
synthetic set (memorisation, diversity, mask statistics, optional FID/KID). Writes report.json,
report.md, report.png.

    python scripts/evaluate.py --data_dir D --num_train_per_type 5 --synthetic DIR --out DIR         [--resolution 128] [--seeds 3] [--iterations 600] [--synthetic_ratio 1.0]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.commands.evaluate import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
