"""
The whole evaluation: data, the guard, the regimes over seeds, paired comparisons with intervals,
memorisation, diversity, mask statistics and optional FID / KID, gathered into one JSON-able report.

Rows: (a) real, (b) real + classic augmentation, (c) real + copy-paste, and per synthetic set NAME
(and per synthetic ratio) (d:NAME) real + the set and (e:NAME) real + copy-paste + the set. Every
row trains with the same seeds, hence the same initial weights and the same real batches (see
segtrain: equal exposure by separate streams). Each synthetic row is compared with (a) and with (c)
by the paired per-seed delta of mIoU without background: a t-based 95% interval over seeds and a
bootstrap over validation images.
"""

import logging
import platform
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..data.stats import mask_statistics
from ..errors import EvaluationError
from ..nn import count_parameters
from . import baselines as baselines_lib
from . import stats as stats_lib
from .amount import amounts
from .augment import CopyPaste, classic_augment
from .good import good_overlap_problems, load_good
from .guard import ValidationIdentity, allowed_problem
from .jobs import ResultCache, run_jobs
from .metrics import mean_std
from .plan import (
    BASELINES,
    COMPARE_WITH,
    SYNTHETIC_REGIMES,
    check_config,
    jsonable_config,
    ratios,
    resolve_rows,
    row_plan,
    seed_list,
    synthetic_sets,
)
from .segnet import SegNet
from .segtrain import class_weights
from .synthetic_sets import describe_set, load_sets

logger = logging.getLogger(__name__)

REPORT_VERSION = 2

SEGMENTATION_KEYS = ("miou", "miou_fg", "mdice", "mdice_fg", "pixel_accuracy")


@dataclass
class EvaluationResult:
    """The report (JSON-able dict) and the pictures the figure needs."""

    report: dict
    examples: dict  # set name -> [(gen image, gen mask, train image, train mask, ratio, g, t)]
    classes: list


def summarise(per_seed, num_classes):
    """
    Give mean / std over seeds of each class's IoU and Dice and of the mean scores.

    :param per_seed: list of segmentation_scores dicts (one per seed).
    """
    iou = np.array([s["iou"] for s in per_seed], dtype=np.float64).reshape(-1, num_classes)
    dice = np.array([s["dice"] for s in per_seed], dtype=np.float64).reshape(-1, num_classes)
    out = {}
    for name, values in (("iou", iou), ("dice", dice)):
        stats = [mean_std(values[:, k]) for k in range(num_classes)]
        out[f"{name}_mean"] = [m for m, _ in stats]
        out[f"{name}_std"] = [s for _, s in stats]
    for key in SEGMENTATION_KEYS:
        mean, std = mean_std([s[key] for s in per_seed])
        out[key] = {"mean": mean, "std": std}
    return out


def paired_deltas(rows_report, base="a"):
    """Give per row other than `base` the mean / std / t interval over seeds of (row - base)."""
    if base not in rows_report:
        return {}
    base_runs = {r["seed"]: r for r in rows_report[base]["per_seed"]}
    out = {}
    for key, entry in rows_report.items():
        if key == base:
            continue
        out[key] = {}
        for metric in ("miou", "miou_fg", "mdice_fg"):
            diffs = [r[metric] - base_runs[r["seed"]][metric] for r in entry["per_seed"]]
            out[key][metric] = dict(stats_lib.paired_interval(diffs), per_seed=diffs)
    return out


def compare(row_runs, base_runs, row_images, base_images, *, num_classes, resamples, seed=0):
    """
    Give the paired comparison of a row with a baseline: mIoU-without-background delta with its t
    interval and bootstrap interval, per-class IoU deltas with t intervals, and the verdict.

    :param row_runs, base_runs: per-seed score dicts (same seeds, same order).
    :param row_images, base_images: [S x V x C x C] per-image confusion matrices.
    """
    diffs = [r["miou_fg"] - b["miou_fg"] for r, b in zip(row_runs, base_runs)]
    seed_ci = stats_lib.paired_interval(diffs)
    boot = None
    if resamples:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples are skipped
            boot = stats_lib.bootstrap_interval(
                row_images, base_images, num_resamples=resamples, seed=seed
            )
    per_class = []
    for k in range(num_classes):
        d = [r["iou"][k] - b["iou"][k] for r, b in zip(row_runs, base_runs)]
        d = [np.nan if v is None else v for v in d]
        per_class.append(stats_lib.paired_interval(d))
    return {
        "metric": "miou_fg",
        "per_seed": diffs,
        "seeds": seed_ci,
        "bootstrap": boot,
        "per_class_iou": per_class,
        "verdict": stats_lib.verdict(seed_ci["lo"], seed_ci["hi"]),
        "bootstrap_verdict": stats_lib.verdict(boot["lo"], boot["hi"]) if boot else None,
    }


def _classic(_index, image, mask, rng):
    return classic_augment(image, mask, rng)


def _augmenter(family, pool, config):
    if family == "b":
        return _classic
    if family in ("c", "e"):
        return CopyPaste(pool.images, pool.masks, probability=config.copy_paste_probability)
    return None


def run_evaluation(config):
    """Give the EvaluationResult of `config` (EvaluationError / DatasetError on bad inputs)."""
    check_config(config)
    sets = synthetic_sets(config)
    baselines, regimes = resolve_rows(config)
    rs = ratios(config)
    timings = {}
    start = time.perf_counter()
    real = _load_real(config, timings)
    num_classes = real.num_defect + 1
    good, good_problems = _load_good(config, real, timings)
    target = baselines_lib.effective_target(config, len(good))
    if target != config.copy_paste_target:
        logger.warning(
            "no good images: copy-paste (c / e) pastes onto the real pairs (target defective)"
        )
    loaded = load_sets(config, sets, real, timings)
    rs = amounts(config, rs)

    # Same settings, same seeds (hence same initial weights and real batches) and the same loss
    # (class weights from the real training masks) for every row.
    t0 = time.perf_counter()
    weights = class_weights(real.train.masks, num_classes) if config.train.class_balance else None
    plan = row_plan(baselines, regimes, loaded, rs)
    if "a" in baselines and len(good):
        plan.insert(baselines.index("a") + 1, ("a+good", "a+good", None, None))
    jobs, rows_meta = _jobs(config, plan, real, loaded, weights, good, target)
    results, reused = _train_all(config, jobs, t0)
    rows, per_image = _rows(config, rows_meta, results, real)
    timings["segmentation"] = time.perf_counter() - t0
    # Baseline (a) is the better of its measured rows (a, a+good); synthetic rows face that one.
    best_a = baselines_lib.best_row(rows)
    comparisons = _comparisons(config, rows, per_image, num_classes, best_a)

    report = {
        "version": REPORT_VERSION,
        "config": jsonable_config(config, sets, baselines, regimes),
        "environment": _environment(config),
        "data": _data_record(real),
        "segmentation": _segmentation_record(
            config, num_classes, weights, rows, comparisons, best_a
        ),
        "good_images": {
            "count": len(good),
            "files": good.names,
            "source": "the dataset's training side only (train/good, else the good folder beside "
            "the defect types); resized like the real pairs; all-background masks",
            "guard": {"problems": good_problems, "overridden": bool(good_problems)},
            "copy_paste_target": target,
            "copy_paste_target_asked": config.copy_paste_target,
        },
        "synthetic": {},
        "mask_stats": {"train": mask_statistics(real.train.masks, real.num_defect)},
        "timings": timings,
        "results_cache": {"folder": config.cache_dir, "trainings": len(jobs), "reused": reused},
    }
    examples = {}
    for name, item in loaded.items():
        t0 = time.perf_counter()
        report["synthetic"][name], examples[name] = describe_set(config, name, item, real)
        timings[f"similarity:{name}"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    return EvaluationResult(report=report, examples=examples, classes=["background"] + real.classes)


def _load_real(config, timings):
    """Give the real split of `config` (its loading time goes into timings["load_real"])."""
    t0 = time.perf_counter()
    real = config.real_split()
    timings["load_real"] = time.perf_counter() - t0
    logger.info(
        "real data: %d classes %s, %d train / %d validation pairs at %d px",
        real.num_defect,
        real.classes,
        len(real.train),
        len(real.val),
        config.resolution,
    )
    return real


def _load_good(config, real, timings):
    """
    Give (the good images of the training side, the guard's allowed problems): EvaluationError when
    one of them is a reported image, unless --allow_overlap.
    """
    t0 = time.perf_counter()
    good = load_good(config.data_dir, resolution=config.resolution, num_good=config.num_good)
    problems = []
    if len(good):
        identity = ValidationIdentity(
            config.data_dir, real.val.names, num_defect=config.num_defect, classes=config.classes
        )
        problems = good_overlap_problems(good.names, identity)
        if problems and not config.allow_overlap:
            raise EvaluationError(problems[0])
        problems = [allowed_problem(p) for p in problems]
        for problem in problems:
            logger.warning("good images: %s", problem)
    timings["load_good"] = time.perf_counter() - t0
    logger.info("good images: %d from the training side", len(good))
    return good, problems


def _jobs(config, plan, real, loaded, weights, good, target):
    """Give (the training jobs: one per row and seed, seed-major; {row key: what the row is})."""
    num_classes = real.num_defect + 1
    jobs, rows_meta = [], {}
    for key, family, name, r in plan:
        if name is None:
            label, description = (
                baselines_lib.GOOD_ROW if family == "a+good" else BASELINES[family]
            )
            if family == "c":
                description = baselines_lib.c_description(config, target)
            syn = None
        else:
            label, description = (t.format(name=name) for t in SYNTHETIC_REGIMES[family])
            syn = loaded[name]["selections"][r][0]
        augment, streams = baselines_lib.streams(family, real.train, good, config)
        if family == "b":
            augment = _augmenter(family, real.train, config)
        if syn is not None and r.share is not None:
            streams["synthetic_share"] = r.share
        rows_meta[key] = (label, description, family, name, r, syn, streams)
        for seed in seed_list(config):
            kwargs = dict(
                num_classes=num_classes,
                settings=config.train,
                seed=seed,
                device=config.device,
                augment=augment,
                weights=weights,
                synthetic=None if syn is None else (syn.images, syn.masks),
                **streams,
            )
            jobs.append(((key, seed), (real.train.images, real.train.masks, real.val), kwargs))
    # Seed by seed: a run stopped midway leaves every row with its first seeds (resumable, --cache).
    jobs.sort(key=lambda job: job[0][1])
    return jobs, rows_meta


def _train_all(config, jobs, t0):
    """
    Run every job not in the results cache; give ({(row key, seed): its result}, how many came from
    the cache), logging each as it finishes.
    """
    results, trained = {}, []
    cache = ResultCache(config.cache_dir)

    def finished(job_id, result, cached):
        results[job_id] = result
        key, seed = job_id
        scores, done = result[0], len(results)
        if cached:
            logger.info("[%d/%d] %s seed %d: from the results cache", done, len(jobs), key, seed)
            return
        trained.append(job_id)
        elapsed = time.perf_counter() - t0
        logger.info(
            "[%d/%d] %s seed %d: mIoU %.4f, mIoU w/o background %.4f (%.1f s; eta %.0f s)",
            done,
            len(jobs),
            key,
            seed,
            scores["miou"],
            scores["miou_fg"],
            scores["seconds"],
            elapsed / len(trained) * (len(jobs) - done),
        )

    run_jobs(jobs, config.workers, finished, cache)
    return results, len(jobs) - len(trained)


def _rows(config, rows_meta, results, real):
    """Give ({row key: the report row}, {row key: per-image scores [seeds x ...]})."""
    num_classes = real.num_defect + 1
    rows, per_image = {}, {}
    for key, (label, description, family, name, r, syn, streams) in rows_meta.items():
        runs = [results[key, seed][0] for seed in seed_list(config)]
        rows[key] = {
            "name": label,
            "description": description,
            "family": family,
            "set": name,
            "ratio": None if r is None else r.ratio,
            "count": None if r is None else r.count,
            "share": None if r is None else r.share,
            "good_images": len(streams.get("good", ())),
            "real_pool_size": len(real.train),
            "synthetic_pool_size": 0 if syn is None else len(syn),
            "per_seed": runs,
            "summary": summarise(runs, num_classes),
        }
        per_image[key] = np.stack([results[key, seed][1] for seed in seed_list(config)])
    return rows, per_image


def _comparisons(config, rows, per_image, num_classes, best_a):
    """
    Give {synthetic row: {baseline: its paired comparison}} for the baselines of COMPARE_WITH, (a)
    being its better measured row `best_a` (recorded as "base_row").
    """
    base_rows = {"a": best_a, "c": "c" if "c" in rows else None}
    comparisons = {}
    for key, entry in rows.items():
        if entry["set"] is None:
            continue
        comparisons[key] = {}
        for base in COMPARE_WITH:
            base_key = base_rows.get(base, base)
            if base_key in rows:
                comparisons[key][base] = compare(
                    entry["per_seed"],
                    rows[base_key]["per_seed"],
                    per_image[key],
                    per_image[base_key],
                    num_classes=num_classes,
                    resamples=config.bootstrap_resamples,
                )
                comparisons[key][base]["base_row"] = base_key
    return comparisons


def _environment(config):
    """Give the report's record of the software and the device."""
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device": config.device,
        "gpu": torch.cuda.get_device_name(0) if config.device.startswith("cuda") else None,
    }


def _data_record(real):
    """Give the report's record of the real data: layout, classes, counts, training files."""
    return {
        "layout": real.layout,
        "classes": ["background"] + list(real.classes),
        "num_defect": real.num_defect,
        "num_train": len(real.train),
        "num_val": len(real.val),
        "train_per_type": _count(real.train.types),
        "val_per_type": _count(real.val.types),
        "train_files": real.train.names,
    }


def _segmentation_record(config, num_classes, weights, rows, comparisons, best_a):
    """Give the report's segmentation section: the model, definitions, rows and comparisons."""
    return {
        "model": {
            "class": "defect_gen.evaluation.segnet.SegNet",
            "class_weights": None if weights is None else weights.tolist(),
            "parameters": count_parameters(
                SegNet(
                    num_classes=num_classes,
                    width=config.train.width,
                    channel_mult=tuple(config.train.channel_mult),
                )
            ),
        },
        "iou_definition": "per class: sum of intersections / sum of unions over the whole "
        "validation set; NaN (null) when a class is in neither prediction nor ground truth; "
        "means skip NaN; std over seeds is the sample std (ddof=1)",
        "exposure": "every row draws the same real pairs at the same steps (same seed); a "
        "synthetic set of M pairs next to N real ones adds batch_size * M / N synthetic draws "
        "per step, so each synthetic pair is drawn as often as each real pair; good images "
        "(rows a+good, c, e, and d with --with_good 1) are a third stream drawn the same way; "
        "with --synthetic_share s the synthetic draws are the fraction s of every batch",
        "rows": rows,
        "delta_vs_a": paired_deltas(rows, base=best_a or "a"),
        "best_baseline_a": best_a,
        "best_baseline_a_means": {
            k: baselines_lib.mean_fg(rows[k]) for k in baselines_lib.A_ROWS if k in rows
        },
        "comparisons": comparisons,
    }


def _count(types):
    out = {}
    for t in types:
        out[t] = out.get(t, 0) + 1
    return out
