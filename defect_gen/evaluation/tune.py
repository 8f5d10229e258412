"""
Choosing the segmenter's settings without looking at the reported images.

`--tune` runs regime (a) (real pairs only) for every point of a small grid, scored by k-fold
cross-validation over the *training* pairs: fold f holds out the pairs whose position within their
defect type is f modulo k (so every fold holds every type), trains on the rest and scores mIoU
without background on the held-out pairs. The validation images are never decoded. The point with
the best mean over folds wins (ties: the earlier grid point); the result is printed as command-line
flags and written to tune.json / tune.md.
"""

import itertools
import json
import logging
import math
import os

import numpy as np

from ..errors import EvaluationError
from ..fileio import atomic_write_text
from .jobs import ResultCache, run_jobs
from .metrics import nanmean_or_nan
from .segtrain import class_weights

logger = logging.getLogger(__name__)

TUNABLE = {
    "lr": float,
    "dice_weight": float,
    "iterations": int,
    "batch_size": int,
    "class_balance": lambda v: bool(int(v)),
}
DEFAULT_GRID = {"lr": (5e-4, 1e-3, 2e-3), "dice_weight": (0.0, 1.0)}


def parse_grid(text, *, types=None, option="--tune_grid", default=None, check=None):
    """
    Give {key: tuple of values} of "key=v1,v2;key=v1"; EvaluationError naming `option` on a bad key or
    value.

    :param types: {key: parser of one value} (default: the segmenter's TUNABLE settings).
    :param default: the grid of an empty text (default: DEFAULT_GRID); "none" gives {} (no grid).
    :param check: None, or a function (key, value) raising ValueError for a value out of range.
    """
    types = TUNABLE if types is None else types
    if text is not None and text.strip() == "none":
        return {}
    if not text:
        return dict(DEFAULT_GRID if default is None else default)
    grid = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, values = part.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise EvaluationError(
                f"{option}: {part.strip()!r}: expected key=v1,v2 with key one of "
                f"{', '.join(types)}"
            )
        try:
            grid[key] = tuple(types[key](v.strip()) for v in values.split(",") if v.strip())
            for v in grid[key]:
                if check is not None:
                    check(key, v)
        except (KeyError, ValueError, EvaluationError):
            raise EvaluationError(f"{option}: {part.strip()!r}: bad value") from None
        if not grid[key]:
            raise EvaluationError(f"{option}: {key} has no values")
    if not grid:
        raise EvaluationError(f"{option}: empty")
    return grid


def fold_of(types, num_folds):
    """Give int [N]: each pair's fold, its position within its defect type modulo num_folds."""
    seen, out = {}, []
    for t in types:
        out.append(seen.get(t, 0) % num_folds)
        seen[t] = seen.get(t, 0) + 1
    return np.array(out, dtype=np.int64)


def cross_validate(real, folds, num_folds, points, *, device, num_classes, workers=1, cache=None):
    """
    Give per point the mIoU without background of each fold: a segmenter trained (seed 0) on the
    other folds of the training pairs, scored on this one. All points' trainings run as one batch of
    jobs (`workers` at once, finished ones taken from `cache`, see jobs.run_jobs).

    :param folds: [N] fold index of each training pair (:func:`fold_of`).
    :param points: [(TrainSettings, streams_for)]: streams_for None, or a function of the fitting
        PairSet giving (augment, extra streams of train_and_score), for the baselines' own
        augmentations.
    """
    jobs = []
    for p, (settings, streams_for) in enumerate(points):
        for f in range(num_folds):
            fit = real.train.subset(np.nonzero(folds != f)[0])
            held = real.train.subset(np.nonzero(folds == f)[0])
            augment, streams = streams_for(fit) if streams_for else (None, {})
            weights = class_weights(fit.masks, num_classes) if settings.class_balance else None
            kwargs = dict(
                num_classes=num_classes, settings=settings, seed=0, device=device,
                augment=augment, weights=weights, **streams,
            )  # fmt: skip
            jobs.append(((p, f), (fit.images, fit.masks, held), kwargs))
    scores = {}

    def finished(job_id, result, cached):
        scores[job_id] = result[0]["miou_fg"]
        p, f = job_id
        how = "from the results cache" if cached else f"{result[0]['seconds']:.0f} s"
        logger.info("point %d fold %d: mIoU w/o bg %.4f (%s)", p + 1, f, scores[job_id], how)

    run_jobs(jobs, workers, finished, cache)
    return [[scores[p, f] for f in range(num_folds)] for p in range(len(points))]


def run_tuning(config, grid, num_folds):
    """
    Give the tuning record {grid, folds, candidates: [{settings, fold_scores, mean}], best}.

    :param config: plan.EvalConfig (data, resolution, device, base TrainSettings).
    :param grid: {key: values}; {} keeps config.train as it is (no segmenter training at all).
    """
    import dataclasses

    if num_folds < 2:
        raise EvaluationError(f"--tune_folds must be at least 2, got {num_folds}")
    real = config.real_split(load_val=False)
    if config.num_train_per_type < num_folds:
        raise EvaluationError(
            f"--tune_folds {num_folds}: needs at least that many training pairs per type "
            f"(--num_train_per_type is {config.num_train_per_type})"
        )
    num_classes = real.num_defect + 1
    folds = fold_of(real.train.types, num_folds)
    keys = list(grid)
    combos = itertools.product(*(grid[k] for k in keys))
    points = [dict(zip(keys, values)) for values in combos] if grid else []
    candidates = []
    all_scores = cross_validate(
        real, folds, num_folds, [(dataclasses.replace(config.train, **p), None) for p in points],
        device=config.device, num_classes=num_classes, workers=config.workers,
        cache=ResultCache(config.cache_dir),
    )  # fmt: skip
    for i, (point, scores) in enumerate(zip(points, all_scores)):
        mean = nanmean_or_nan(scores)
        logger.info("[%d/%d] %s: cross-validated mIoU w/o bg %.4f", i + 1, len(points), point, mean)
        candidates.append({"settings": point, "fold_scores": scores, "mean": mean})
    best = {"settings": {}, "fold_scores": [], "mean": None}  # nothing tuned (--tune_grid none)
    if candidates:
        best = best_candidate(candidates)
    return {
        "grid": {k: list(v) for k, v in grid.items()},
        "folds": num_folds,
        "fold_rule": "fold f holds out each type's pairs at positions f, f + k, ...",
        "regime": "a (real pairs only), seed 0",
        "base_settings": dataclasses.asdict(config.train),
        "candidates": candidates,
        "best": best,
        "flags": " ".join(f"--{k} {_flag(v)}" for k, v in best["settings"].items()),
    }


def best_candidate(candidates):
    """Give the candidate with the best mean over folds (ties: the earlier; all NaN: the first)."""
    finite = [c for c in candidates if not math.isnan(c["mean"])]
    return max(finite, key=lambda c: c["mean"]) if finite else candidates[0]


def _flag(value):
    return str(int(value)) if isinstance(value, bool) else f"{value:g}"


def write_tuning(record, out_dir):
    """Write tune.json and tune.md; give their paths."""
    from .baseline_tune import markdown
    from .report import to_jsonable

    os.makedirs(out_dir, exist_ok=True)
    paths = {n: os.path.join(out_dir, f"tune.{n}") for n in ("json", "md")}
    atomic_write_text(paths["json"], json.dumps(to_jsonable(record), indent=1) + "\n")
    lines = _segmenter_markdown(record)
    lines += markdown(record)  # the baselines' settings (issue 20), when tuned
    if record["grid"]:
        lines += ["", f"Best: `{record['flags']}`"]
    atomic_write_text(paths["md"], "\n".join(lines + [""]))
    return paths


def _segmenter_markdown(record):
    """Give the tune.md lines of the segmenter tuning: its table, or that it did not run."""
    keys = list(record["grid"])
    if not keys:
        settings = ", ".join(f"{k} {v}" for k, v in record["base_settings"].items())
        return [
            "# Tuning (cross-validation over the training pairs)",
            "",
            f"Segmenter settings not tuned (`--tune_grid none`): {settings}",
        ]
    lines = [
        "# Segmenter tuning (cross-validation over the training pairs)",
        "",
        f"{record['folds']} folds; {record['fold_rule']}; regime {record['regime']}. The reported "
        "validation images were not read.",
        "",
        "| "
        + " | ".join(keys + ["mean mIoU w/o bg"] + [f"fold {f}" for f in range(record["folds"])])
        + " |",
        "|" + "---|" * (len(keys) + 1 + record["folds"]),
    ]
    for c in record["candidates"]:
        cells = [str(c["settings"][k]) for k in keys] + [f"{c['mean']:.4f}"]
        cells += [f"{s:.4f}" for s in c["fold_scores"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
