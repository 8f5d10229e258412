"""
Keep the best pairs of a sample folder in a new folder: the N pairs that `scripts/evaluate.py
--synthetic_count N --synthetic_select HOW` trains on, copied with their manifest, ready to train a
segmenter on.

    python scripts/select_pairs.py --source runs/p128/pool200 --dest runs/p128/realistic50 \
        --count 50 --select realistic --data_dir ../shared/data/magnetic_tile_dev

--select (default realistic): balanced fills per-class quotas in proportion to the real training
pairs' classes in file order; scored fills them with each class's highest sample scores (how clearly
the image shows its mask); realistic with each class's defects nearest the real training pairs of
that class in step and texture (defect_gen.evaluation.realism). Only the training pairs of --data_dir
are read (the first --num_train_per_type per type, as evaluate splits them): their classes set the
quotas, their defects the reference. The pairs are measured at --resolution, as evaluate measures
them, and copied byte for byte at their own size.

--dest must be new or empty; nothing is written when an input is wrong, and the pairs are written
beside it first, so a stopped run leaves no half-filled --dest. Its manifest.json is the
source's, restricted to the kept pairs (samples, scores), with `selected_from` naming the source
folder, the rule and per kept pair its source index, seed, class and distance or score.
scripts/sample.py refuses to add samples to such a folder.
"""

import logging
import os
import shutil
import sys

import blobfile as bf

from ..errors import ConfigError, EvaluationError, FolderError
from ..evaluation.data import load_real_split, load_synthetic
from ..evaluation.selection import (
    SELECTIONS,
    dominant_classes,
    select_synthetic,
    shortfall_sentences,
)
from ..evaluation.synthetic_sets import selection_measures
from ..fileio import absolute_path, is_local_path
from ..logger import configure_logging
from ..sampling import folder
from .cli import make_parser, run_cli

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--source", required=True, help="the sample folder to select from")
    p.add_argument("--dest", required=True, help="the new folder (new or empty)")
    p.add_argument("--count", type=int, required=True, help="pairs to keep")
    p.add_argument("--select", default="realistic", choices=SELECTIONS, help="the rule (above)")
    p.add_argument("--data_dir", required=True, help="the real dataset (its training pairs only)")
    p.add_argument("--num_train_per_type", type=int, default=5)
    p.add_argument("--resolution", type=int, default=128, help="the size pairs are measured at")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    configure_logging()
    if args.count < 1:
        raise ConfigError(f"--count must be at least 1, got {args.count}")
    if bf.exists(args.dest) and (not bf.isdir(args.dest) or bf.listdir(args.dest)):
        raise FolderError(f"{args.dest}: exists and is not an empty folder; give a new --dest")
    manifest = folder.read_manifest(args.source)
    if manifest is None:
        raise EvaluationError(f"{folder.manifest_path(args.source)}: not found; --source must be a "
                              "sample folder written by scripts/sample.py")  # fmt: skip
    real = load_real_split(
        args.data_dir,
        num_train_per_type=args.num_train_per_type,
        resolution=args.resolution,
        load_val=False,
    )
    classes = manifest.get("classes")
    if classes is not None and list(classes) != list(real.classes):
        raise EvaluationError(
            f"{folder.manifest_path(args.source)}: classes {classes} differ from the real data's "
            f"{real.classes} ({args.data_dir})"
        )
    pairs = load_synthetic(args.source, num_defect=real.num_defect, resolution=args.resolution).pairs
    stems = [os.path.splitext(os.path.basename(name))[0] for name in pairs.names]
    odd = [name for name, stem in zip(pairs.names, stems) if not stem.isdigit()]
    if odd:
        raise EvaluationError(f"{odd[0]}: not a sample file name (NNNNNN.png)")
    if args.count > len(pairs):
        raise EvaluationError(f"--count {args.count}: {args.source} holds only {len(pairs)} pairs")
    scores, distances = selection_measures(args.select, pairs, real.train, real.num_defect)
    kept, record = select_synthetic(
        pairs.masks,
        real.train.masks,
        num_defect=real.num_defect,
        want=args.count,
        how=args.select,
        scores=scores,
        distances=distances,
    )
    for sentence in shortfall_sentences(record, real.classes):
        logger.warning("%s: %s", args.source, sentence)
    if not kept:
        raise EvaluationError(
            f"{args.source}: no pair holds a defect of a class the real training pairs have"
        )
    sources = [int(stems[j]) for j in kept]
    kept_classes = dominant_classes(pairs.masks[kept], real.num_defect)
    chosen = (kept, sources, kept_classes)
    if not is_local_path(args.dest):
        write_selection(args.dest, args, manifest, chosen, record, (scores, distances), real.classes)
    else:  # written beside it first, so a stopped run leaves no half-filled --dest
        partial = f"{os.path.abspath(args.dest)}.partial-{os.getpid()}"
        try:
            write_selection(partial, args, manifest, chosen, record, (scores, distances), real.classes)
            if os.path.isdir(args.dest):
                os.rmdir(args.dest)  # empty, as checked above
            os.replace(partial, args.dest)
        finally:
            shutil.rmtree(partial, ignore_errors=True)  # ours; gone after the rename
    logger.info(
        "%s: %d of %d pairs kept (%s) in %s", args.source, len(kept), len(pairs), args.select,
        args.dest,
    )  # fmt: skip
    return 0


def _source_seed(manifest, j):
    """Give the seed sample j of a source folder was drawn from."""
    selection = manifest.get("selection")
    if selection:  # sampled with --keep: the kept candidates' seeds are listed
        return selection["kept"][j]["seed"]
    return int(manifest["generation"].get("seed", 0)) + j


def write_selection(dest, args, manifest, chosen, record, measures, classes):
    """
    Copy the kept pairs to `dest` as samples 0, 1, .. and write its grid and manifest last.

    :param chosen: (positions in the loaded pairs, source sample indices, dominant classes).
    :param measures: (scores, distances) of every loaded pair, each None unless ranked by.
    """
    kept, sources, kept_classes = chosen
    scores, distances = measures
    for i, j in enumerate(sources):
        src, dst = folder.sample_files(args.source, j), folder.sample_files(dest, i)
        for sub, path in src.items():
            if not bf.exists(path):
                if sub == "masks_rgb":
                    continue  # optional: evaluate reads images/ and masks/
                raise EvaluationError(f"{path}: missing")
            bf.makedirs(bf.dirname(dst[sub]))
            bf.copy(path, dst[sub], overwrite=True)
    num_defect = len(classes)
    out = {k: v for k, v in manifest.items() if k not in ("selection", "last_run", "timing")}
    out["num_samples"] = len(sources)
    out["seeds"] = (
        "sample i is sample selected_from.kept[i].source_index of selected_from.folder, drawn from "
        "the seed listed there"
    )
    if isinstance(manifest.get("samples"), list):
        by_index = {s.get("index"): s for s in manifest["samples"]}
        out["samples"] = [{**by_index.get(j, {}), "index": i} for i, j in enumerate(sources)]
    if isinstance(manifest.get("scores"), list):
        out["scores"] = [manifest["scores"][j] for j in sources]
    entries = []
    for i, (position, j) in enumerate(zip(kept, sources)):
        entry = {
            "index": i, "source_index": j, "seed": _source_seed(manifest, j),
            "class": classes[kept_classes[i] - 1] if kept_classes[i] else None,
        }  # fmt: skip
        if scores is not None:
            entry["score"] = scores[position]
        if distances is not None:
            entry["distance"] = distances[position]
        entries.append(entry)
    out["selected_from"] = {
        "folder": absolute_path(args.source),
        "select": args.select,
        "count": args.count,
        "resolution": args.resolution,
        "data_dir": absolute_path(args.data_dir),
        "num_train_per_type": args.num_train_per_type,
        "per_class": [
            {"class": classes[c["class"] - 1], "quota": c["quota"], "available": c["available"],
             "used": c["used"]}
            for c in record["per_class"]
        ],  # fmt: skip
        "kept": entries,
    }
    indices = list(range(len(sources)))
    out["generated_mask_stats"] = folder.folder_mask_stats(dest, indices, num_defect)
    folder.write_grid(dest, indices, num_defect)
    folder.write_manifest(dest, out)


def entry():
    """The console command: user errors become one `error:` line (see defect_gen.commands.cli)."""
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
