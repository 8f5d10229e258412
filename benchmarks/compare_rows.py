"""
Paired comparison of two rows of scripts/evaluate.py reports, also across reports (e.g. the
score-filtered set of one run against the balanced set of another): the per-seed delta of mIoU
without background with its t-based 95% interval and verdict, as the reports give theirs.

    python benchmarks/compare_rows.py R/scored128/report.json "d:inpaint128@n=25,share=0.25" \
        R/sweep128_count/report.json "d:inpaint128@n=25,share=0.25"

`--seeds 10-19` keeps only those seeds (e.g. the seeds a longer run added, as a replication).

Both rows must come from the same data, resolution, segmenter settings and seeds (checked), so that
seed s of one and seed s of the other start from the same weights and see the same real batches.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.evaluation.stats import paired_interval, verdict  # noqa: E402

SAME = ("data_dir", "num_train_per_type", "resolution", "train", "num_good")


def load_row(path, key):
    try:
        with open(path) as f:
            report = json.load(f)
        rows = report["segmentation"]["rows"]
    except OSError as e:
        sys.exit(f"error: {path}: cannot read ({e.strerror})")
    except (ValueError, KeyError, TypeError):
        sys.exit(f"error: {path}: not a report.json of scripts/evaluate.py")
    if key not in rows:
        sys.exit(f"error: {path}: no row {key!r} (rows: {', '.join(rows)})")
    return report["config"], rows[key]


def seed_range(text):
    """'10-19' -> range(10, 20); '3' -> range(3, 4)."""
    first, _, last = text.partition("-")
    try:
        first, last = int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIRST-LAST (e.g. 10-19)") from None
    if first < 0 or last < first:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= FIRST <= LAST")
    return range(first, last + 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", help="report.json of the row")
    p.add_argument("row", help="its row key")
    p.add_argument("base_report", help="report.json of the row it is compared with")
    p.add_argument("base_row", help="that row's key")
    p.add_argument("--seeds", type=seed_range, help="only these seeds, FIRST-LAST (default: all in common)")
    args = p.parse_args(argv)
    config, row = load_row(args.report, args.row)
    base_config, base = load_row(args.base_report, args.base_row)
    for key in SAME:
        if config.get(key) != base_config.get(key):
            theirs = base_config.get(key)
            sys.exit(f"error: the reports differ in {key}: {config.get(key)} / {theirs}")
    by_seed = {r["seed"]: r["miou_fg"] for r in base["per_seed"]}
    seeds = [r["seed"] for r in row["per_seed"] if r["seed"] in by_seed]
    if args.seeds is not None:
        missing = [s for s in args.seeds if s not in seeds]
        if missing:
            sys.exit(f"error: seeds {', '.join(map(str, missing))} are not in both rows")
        seeds = list(args.seeds)
    if len(seeds) < 2:
        sys.exit("error: fewer than two seeds in common")
    mine = {r["seed"]: r["miou_fg"] for r in row["per_seed"]}
    deltas = [mine[s] - by_seed[s] for s in seeds]
    ci = paired_interval(deltas)
    print(
        f"{args.row} - {args.base_row}: {ci['mean']:+.3f} mIoU w/o background, 95% interval "
        f"[{ci['lo']:+.3f}, {ci['hi']:+.3f}] over seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}): "
        f"{verdict(ci['lo'], ci['hi'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
