"""
Do the generated defects look like the real ones? Per class, real training pairs against sample folders.

For every pair and its defect class (the mask's most frequent class) it measures, at the benchmark's
resolution, the score, the step and the texture of ``defect_gen.evaluation.realism`` (the measures
``scripts/evaluate.py --synthetic_select realistic`` selects by).

It prints the medians per class, real pairs first, as a markdown table. The real pairs are the training
pairs only (the first ``--num_train_per_type`` of each type, as ``scripts/evaluate.py`` selects them):
the images the benchmark reports on are never read. ``--figure`` also draws them: a row per class, the
first four real training pairs, then the first four of every folder.

    python benchmarks/pair_realism.py --data_dir ../shared/data/magnetic_tile_dev --resolution 128 \\
        runs/p128/inpaint128 --figure realism.png
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.evaluation.data import load_real_split, load_synthetic  # noqa: E402
from defect_gen.evaluation.realism import (  # noqa: E402
    class_references,
    pair_measures,
    realism_distances,
)
from defect_gen.evaluation.selection import select_synthetic  # noqa: E402
from defect_gen.fileio import write_png  # noqa: E402


def class_medians(pairs, num_defect):
    """Give {class index: (count, median score, median step, median texture)} of a PairSet."""
    rows = {}
    for rgb, index_map in zip(pairs.images, pairs.masks):
        m = pair_measures(rgb, index_map)
        if m is not None:
            rows.setdefault(m[0], []).append(m[1:])
    return {
        k: (len(v), *np.median(np.array(v, dtype=np.float64), axis=0))
        for k, v in sorted(rows.items())
        if 1 <= k <= num_defect
    }


def class_figure(sources, num_defect, per_class=4, gap=4):
    """
    Give a uint8 [H x W x 3] picture: a row per class, in each the first `per_class` pairs of that class
    from every source side by side (sources separated by a white gap; a missing pair stays black).

    :param sources: [(name, PairSet)], the real pairs first.
    """
    side = sources[0][1].images[0].shape[0]
    rows = []
    for k in range(1, num_defect + 1):
        blocks = []
        for _, pairs in sources:
            picked = [
                rgb for rgb, index_map in zip(pairs.images, pairs.masks)
                if (m := pair_measures(rgb, index_map)) is not None and m[0] == k
            ][:per_class]  # fmt: skip
            block = np.zeros((side, per_class * side, 3), np.uint8)
            for j, rgb in enumerate(picked):
                block[:, j * side : (j + 1) * side] = rgb
            blocks += [block, np.full((side, gap, 3), 255, np.uint8)]
        rows += [np.concatenate(blocks[:-1], axis=1), None]
    width = rows[0].shape[1]
    gap_row = np.full((gap, width, 3), 255, np.uint8)
    return np.concatenate([r if r is not None else gap_row for r in rows[:-1]], axis=0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="*", help="sample folders (images/, masks/, manifest.json)")
    p.add_argument("--data_dir", required=True, help="the real dataset (its training pairs only)")
    p.add_argument("--num_train_per_type", type=int, default=5)
    p.add_argument("--resolution", type=int, default=128, help="every pair is resized to this")
    p.add_argument(
        "--figure",
        help="also write a PNG: a row per class, its first 4 real training pairs, then the first 4 of "
        "every folder",
    )
    p.add_argument(
        "--realistic",
        type=int,
        help="also measure (and draw) the N pairs of every folder that scripts/evaluate.py "
        "--synthetic_count N --synthetic_select realistic trains on",
    )
    args = p.parse_args()
    real = load_real_split(
        args.data_dir,
        num_train_per_type=args.num_train_per_type,
        resolution=args.resolution,
        load_val=False,
    )
    sources = [("real training pairs", real.train)]
    references = class_references(real.train.images, real.train.masks, real.num_defect)
    for folder in args.folders:
        pairs = load_synthetic(folder, num_defect=real.num_defect, resolution=args.resolution).pairs
        sources.append((folder, pairs))
        if args.realistic:
            distances = realism_distances(pairs.images, pairs.masks, references)
            kept, _ = select_synthetic(
                pairs.masks,
                real.train.masks,
                num_defect=real.num_defect,
                want=args.realistic,
                how="realistic",
                distances=distances,
            )
            sources.append((f"{folder} (realistic {args.realistic})", pairs.subset(kept)))
    print("| class | pairs | count | score | step (in - ring) | texture in / out |")
    print("|---|---|---|---|---|---|")
    medians = [(name, class_medians(pairs, real.num_defect)) for name, pairs in sources]
    for k, cls in enumerate(real.classes, start=1):
        for name, table in medians:
            if k in table:
                n, score, step, texture = table[k]
                print(f"| {cls} | {name} | {n} | {score:.1f} | {step:+.1f} | {texture:.2f} |")
    if args.figure:
        write_png(args.figure, class_figure(sources, real.num_defect))
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
