"""
Check a defect dataset folder and print what training will read; optionally rewrite it in the official layout.

    python scripts/prepare_data.py DATA_DIR [--num_defect K] [--classes a,b,c] [--num_image_train N]
                                   [--write_official OUT]

Prints the layout, the defect types with their class ids, pair counts, mask coverage and every problem
found. Exits 2 when there is any problem (nothing is written then).
"""

import argparse
import sys

import numpy as np

from ..data.files import mask_values, open_image, read_masks
from ..data.layouts import check_dataset, write_official
from ..data.stats import mask_statistics
from ..limits import check_options
from .cli import run_cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "data_dir", help="dataset folder (official, MVTec or Defect Spectrum layout)"
    )
    parser.add_argument("--num_defect", type=int, default=None, help="number of defect classes")
    parser.add_argument(
        "--classes", default=None, help="comma-separated defect types in class order (MVTec layout)"
    )
    parser.add_argument(
        "--num_image_train", type=int, default=None, help="first N images per defect type"
    )
    parser.add_argument(
        "--write_official", metavar="OUT", default=None, help="write the official layout here"
    )
    return parser.parse_args(argv)


def print_summary(index):
    """Print the layout, classes and per-type counts and mask coverage of a DatasetIndex."""
    print(f"data_dir: {index.root}")
    print(f"layout: {index.layout}")
    print(f"num_defect: {index.num_defect if index.num_defect is not None else 'unknown'}")
    print("classes: " + (", ".join(f"{k}={n}" for k, n in enumerate(index.classes, 1)) or "none"))
    num_defect = index.num_defect or 0
    header = (
        f"{'defect type':<24} {'class ids':>10} {'images':>7} {'selected':>9} {'defect area %':>14}"
    )
    print(header)
    print("-" * len(header))
    for defect_type in index.defect_types:
        total, selected = index.counts[defect_type]
        pairs = [p for p in index.pairs if p.defect_type == defect_type]
        ids, area = "-", "-"
        if pairs and num_defect:
            stats = mask_statistics(read_masks(index.subset(pairs), num_defect), num_defect)
            present = [k for k in range(1, num_defect + 1) if stats["share_with_class"][k] > 0]
            ids = ",".join(map(str, present)) or "none"
            area = f"{100 * (1 - stats['mean_area'][0]):.3f}"
        print(f"{defect_type:<24} {ids:>10} {total:>7} {selected:>9} {area:>14}")
    total = sum(t for t, _ in index.counts.values())
    print(f"{'total':<24} {'':>10} {total:>7} {len(index.pairs):>9}")
    if index.pairs and num_defect:
        stats = mask_statistics(read_masks(index, num_defect), num_defect)
        print("per class over the selected masks:")
        for k in range(1, num_defect + 1):
            print(
                f"  {k}={index.classes[k - 1]}: in {100 * stats['share_with_class'][k]:.1f}% of masks, "
                f"mean area {100 * stats['mean_area'][k]:.3f}%"
            )


# A mask value is stray when classes are missing between it and the next value and it occurs in at
# most this share of the masks (at least one): one mislabelled mask must not define K.
STRAY_MAX_SHARE = 0.05


def find_stray_value(index):
    """
    Give (value, next value below, masks holding it) when the largest mask value of a class-index
    dataset whose K was inferred sits far above the others, else None.
    """
    if index is None or index.binary_masks or not index.pairs:
        return None
    holders = {}
    for pair in index.pairs:
        values = np.unique(mask_values(open_image(pair.mask), pair.mask, False))
        for v in values[values > 0].tolist():
            holders.setdefault(v, []).append(pair.mask)
    defect = sorted(holders)
    if len(defect) < 2:
        return None
    top, below = defect[-1], defect[-2]
    few = len(holders[top]) <= max(1, int(STRAY_MAX_SHARE * len(index.pairs)))
    return (top, below, holders[top]) if top - below > 1 and few else None


def empty_classes(index):
    """Give "k=name" of the classes (1..K) that no selected mask holds."""
    if index is None or not index.pairs or not index.num_defect:
        return []
    stats = mask_statistics(read_masks(index, index.num_defect), index.num_defect)
    return [
        f"{k}={index.classes[k - 1]}" for k in range(1, index.num_defect + 1)
        if stats["share_with_class"][k] == 0
    ]  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    check_options(args, "prepare_data")  # every number, before anything is read or written
    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    index, problems = check_dataset(
        args.data_dir,
        num_defect=args.num_defect,
        classes=classes,
        num_image_train=args.num_image_train,
    )
    stray = None if args.num_defect or classes else find_stray_value(index)
    if stray:  # K from the values below it; the stray masks become problems naming the files
        top, below, masks = stray
        index, problems = check_dataset(
            args.data_dir, num_defect=below, classes=classes,
            num_image_train=args.num_image_train,
        )  # fmt: skip
        problems.insert(
            0,
            f"{masks[0]}: mask value {top} far above the other masks' values (largest {below}), "
            f"in {len(masks)} mask(s); classes {below + 1}..{top - 1} never occur. A stray "
            f"value? Fix the mask, or pass --num_defect {top} if it is a real class",
        )
    if index is not None:
        print_summary(index)
        empty = empty_classes(index) if not problems else []
        if empty:
            print(
                f"warning: num_defect={index.num_defect} but class(es) {', '.join(empty)} occur in "
                f"no selected mask: training would learn them as empty classes",
                file=sys.stderr,
            )
    if problems:
        print(f"problems: {len(problems)}")
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        print(f"error: {problems[0]}{more}", file=sys.stderr)
        return 2
    print("problems: none")
    if args.write_official:
        written = write_official(index, args.write_official)
        print(f"wrote {written} pairs in the official layout to {args.write_official}")
    return 0


def entry():
    """The console command: user errors become one `error:` line (see defect_gen.commands.cli)."""
    sys.exit(run_cli(main))
