"""
`--tune` for the baselines' few settings, by the segmenter tuning's cross-validation (tune.py): the
folds hold out training pairs by their position within their defect type, the good images (training
side) stay in every fold's training streams, copy-paste takes its regions from the fold's training
pairs only, and the reported validation images are never decoded.

Grid (DEFAULT_GRID, `--tune_baseline_grid`): (a) with_good 0 / 1 (rows a vs a+good); (c)
copy_paste_probability 0.5 / 1 x copy_paste_blend alpha / poisson x copy_paste_feather 2. Each point
trains with the segmenter settings the segmenter tuning chose, seed 0; the best mean over folds wins
(ties: the earlier point) and is written as flags into tune.json / tune.md.
"""

import dataclasses
import functools
import itertools
import logging

from . import baselines as baselines_lib
from .good import BLENDS, check_good_settings, load_good
from .jobs import ResultCache
from .metrics import nanmean_or_nan
from .tune import best_candidate, cross_validate, fold_of, parse_grid

DEFAULT_GRID = {
    "with_good": (0, 1),
    "copy_paste_probability": (0.5, 1.0),
    "copy_paste_blend": ("alpha", "poisson"),
    "copy_paste_feather": (2.0,),
}
A_KEYS = ("with_good",)
C_KEYS = ("copy_paste_probability", "copy_paste_blend", "copy_paste_feather")
_TYPES = {
    "with_good": lambda v: {"0": 0, "1": 1}[v],
    "copy_paste_probability": float,
    "copy_paste_blend": lambda v: v if v in BLENDS else {}[v],
    "copy_paste_feather": float,
}
logger = logging.getLogger(__name__)


def parse_baseline_grid(text):
    """Give {key: values} of "key=v1,v2;..." ("none": {}); EvaluationError naming the option."""
    if text is None:
        return dict(DEFAULT_GRID)
    if text.strip() == "none":
        return {}
    return parse_grid(
        text, types=_TYPES, option="--tune_baseline_grid", default=DEFAULT_GRID, check=_check_value
    )


def _check_value(key, value):
    """Raise EvaluationError for a copy-paste probability or feather width out of range."""
    if key == "copy_paste_probability":
        check_good_settings(value, "alpha", 0.0, "good")
    if key == "copy_paste_feather":
        check_good_settings(0.5, "alpha", value, "good")


def _points(grid, keys, config):
    values = [grid.get(k, (getattr(config, k),)) for k in keys]
    return [dict(zip(keys, v)) for v in itertools.product(*values)]


def run_baseline_tuning(config, grid, num_folds, segmenter=None):
    """
    Give {a: {candidates, best}, c: {candidates, best}, flags} of the baselines' settings, scored
    by cross-validation over the training pairs (see the module docstring).

    :param segmenter: the segmenter settings to train with (tune's best point; None: config.train).
    """

    if not grid:
        return None
    real = config.real_split(load_val=False)
    good = load_good(config.data_dir, resolution=config.resolution, num_good=config.num_good)
    settings = dataclasses.replace(config.train, **(segmenter or {}))
    num_classes = real.num_defect + 1
    folds = fold_of(real.train.types, num_folds)
    record = {"good_images": len(good), "segmenter": dataclasses.asdict(settings)}
    jobs = []
    if len(good) and "with_good" in grid:
        jobs.append(("a", _points(grid, A_KEYS, config)))
    if "c" in config.baselines or any(k in grid for k in C_KEYS):
        keys = C_KEYS
        if baselines_lib.effective_target(config, len(good)) == "defective":
            keys = ("copy_paste_probability",)  # the old pixel-exact paste has no blend / feather
        jobs.append(("c", _points(grid, keys, config)))
    entries = [(baseline, point) for baseline, points in jobs for point in points]
    all_scores = cross_validate(
        real, folds, num_folds, [(settings, _streams_for(b, p, good, config)) for b, p in entries],
        device=config.device, num_classes=num_classes, workers=config.workers,
        cache=ResultCache(config.cache_dir),
    )  # fmt: skip
    candidates = {baseline: [] for baseline, _ in jobs}
    for (baseline, point), scores in zip(entries, all_scores):
        mean = nanmean_or_nan(scores)
        logger.info("baseline %s %s: cross-validated mIoU w/o bg %.4f", baseline, point, mean)
        candidates[baseline].append({"settings": point, "fold_scores": scores, "mean": mean})
    flags = []
    for baseline, found in candidates.items():
        best = best_candidate(found)
        record[baseline] = {"candidates": found, "best": best}
        flags += [f"--{k} {_flag(v)}" for k, v in best["settings"].items()]
    record["grid"] = {k: list(v) for k, v in grid.items()}
    record["flags"] = " ".join(flags)
    return record


def _streams_for(baseline, point, good, config):
    """Give the function of a fold's fitting pairs giving the streams of a grid point's row."""
    if baseline == "a":
        family, cfg = ("a+good" if point["with_good"] else "a"), config
    else:
        family, cfg = "c", dataclasses.replace(config, **point)
    return functools.partial(_streams, family, good, cfg)


def _streams(family, good, config, fit):
    return baselines_lib.streams(family, fit, good, config)


def _flag(value):
    if isinstance(value, str):
        return value
    return str(int(value)) if isinstance(value, (bool, int)) else f"{value:g}"


def markdown(record):
    """Give the tune.md lines of the baseline tuning (empty when it did not run)."""
    base = record.get("baselines")
    if not base:
        return []
    lines = ["", "## Baselines (same folds; good images in every fold's training streams)", ""]
    for baseline in ("a", "c"):
        if baseline not in base:
            continue
        keys = list(base[baseline]["best"]["settings"])
        lines += [f"Baseline ({baseline}):", ""]
        lines.append("| " + " | ".join(keys + ["mean mIoU w/o bg"]) + " |")
        lines.append("|" + "---|" * (len(keys) + 1))
        for c in base[baseline]["candidates"]:
            cells = [str(c["settings"][k]) for k in keys] + [f"{c['mean']:.4f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"Baselines best: `{base['flags']}`")
    return lines
