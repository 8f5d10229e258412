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

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import platform
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from defect_gen.evaluation import fid as fid_lib
from defect_gen.evaluation import similarity
from defect_gen.evaluation import stats as stats_lib
from defect_gen.evaluation.augment import CopyPaste, classic_augment
from defect_gen.evaluation.data import EvaluationError, load_real_split, load_synthetic
from defect_gen.evaluation.guard import ValidationIdentity, check_synthetic_set
from defect_gen.evaluation.metrics import mean_std
from defect_gen.evaluation.segnet import SegNet, count_parameters
from defect_gen.evaluation.segtrain import TrainSettings, class_weights, train_and_score
from defect_gen.evaluation.selection import SELECTIONS, select_synthetic, shortfall_sentences
from defect_gen.masks import mask_statistics

logger = logging.getLogger(__name__)

REPORT_VERSION = 2

BASELINES = {
    "a": ("real", "real training pairs only"),
    "b": ("real+classic", "real pairs with flips, 90° rotations, brightness/contrast jitter"),
    "c": ("real+copy-paste", "real pairs with real defect regions pasted onto other real images"),
}
BASELINE_NAMES = {"real": "a", "classic": "b", "copy_paste": "c"}
SYNTHETIC_REGIMES = {
    "d": ("real+{name}", "real pairs plus synthetic set {name} (a second stream)"),
    "e": (
        "real+copy-paste+{name}",
        "copy-paste on the real pairs plus synthetic set {name} (a second stream)",
    ),
}
COMPARE_WITH = ("a", "c")  # every synthetic row is compared with these baselines

SEGMENTATION_KEYS = ("miou", "miou_fg", "mdice", "mdice_fg", "pixel_accuracy")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass
class EvalConfig:
    """Everything the evaluation depends on (written into the report as given)."""

    data_dir: str
    num_train_per_type: int = 5
    # [(name, folder), ...]; a bare folder string is one set named by the folder's base name.
    synthetic: object = None
    resolution: int = 128
    seeds: int = 5
    baselines: tuple = ("a", "b", "c")
    regimes: tuple = ("d", "e")
    modes: Optional[tuple] = None  # letters out of a..e; when given, replaces baselines / regimes
    synthetic_ratio: object = (1.0,)  # one float or a sequence: one row per ratio
    synthetic_select: str = "balanced"
    allow_overlap: bool = False
    bootstrap_resamples: int = 2000
    num_defect: Optional[int] = None
    classes: Optional[list] = None
    max_val: Optional[int] = None
    device: str = "cpu"
    copy_paste_probability: float = 0.5
    memorisation_threshold: float = similarity.DEFAULT_THRESHOLD
    inception_weights: Optional[str] = None
    inception_size: int = 299
    inception_range: Optional[str] = None  # None: by extractor kind (fid.default_input_range)
    num_examples: int = 8
    # Segmenter trainings run at once, each in its own process (1: in this process). On a GPU a few
    # workers share it well: the segmenter is small. Results do not depend on the number.
    workers: int = 1
    train: TrainSettings = field(default_factory=TrainSettings)


@dataclass
class EvaluationResult:
    """The report (JSON-able dict) and the pictures the figure needs."""

    report: dict
    examples: dict  # set name -> [(gen image, gen mask, train image, train mask, ratio, g, t)]
    classes: list


def parse_synthetic_arg(text):
    """Give (name, folder) of a `--synthetic` value: NAME=DIR, or a bare DIR named by its folder."""
    head, sep, rest = text.partition("=")
    if sep and _NAME.match(head) and rest:
        return head, rest
    name = os.path.basename(os.path.normpath(text)) or "synthetic"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name), text


def synthetic_sets(config):
    """Give the list of (name, folder) of config.synthetic; EvaluationError for clashing names."""
    value = config.synthetic
    if not value:
        return []
    if isinstance(value, (str, os.PathLike)):
        value = [str(value)]
    sets = [parse_synthetic_arg(str(v)) if not isinstance(v, tuple) else v for v in value]
    seen = set()
    for name, _ in sets:
        if not _NAME.match(name):
            raise EvaluationError(
                f"--synthetic: set name {name!r} may use letters, digits, _ . + -"
            )
        if name in seen:
            raise EvaluationError(f"--synthetic: set name {name!r} given twice; use NAME=DIR")
        seen.add(name)
    return sets


def ratios(config):
    """Give the tuple of synthetic ratios (one row per ratio and set)."""
    value = config.synthetic_ratio
    values = (value,) if isinstance(value, (int, float)) else tuple(value)
    return tuple(dict.fromkeys(float(v) for v in values))


def resolve_rows(config):
    """Give (baseline letters, synthetic regime letters) to run; EvaluationError for bad ones."""
    if config.modes is not None:
        letters = [m.strip() for m in config.modes if m.strip()]
        unknown = [m for m in letters if m not in BASELINES and m not in SYNTHETIC_REGIMES]
        if unknown or not letters:
            raise EvaluationError(
                f"--modes: unknown mode {unknown or letters!r}; choose from a, b, c, d, e"
            )
        base = tuple(m for m in BASELINES if m in letters)
        regimes = tuple(m for m in SYNTHETIC_REGIMES if m in letters)
        if regimes and not config.synthetic:
            raise EvaluationError(f"--modes: mode {regimes[0]} needs --synthetic DIR")
    else:
        base = tuple(m for m in BASELINES if m in config.baselines)
        bad = [m for m in config.baselines if m not in BASELINES]
        if bad:
            raise EvaluationError(
                f"--baselines: unknown baseline {bad[0]!r}; choose from real, classic, copy_paste"
            )
        bad = [m for m in config.regimes if m not in SYNTHETIC_REGIMES]
        if bad:
            raise EvaluationError(f"--regimes: unknown regime {bad[0]!r}; choose from d, e")
        regimes = tuple(m for m in SYNTHETIC_REGIMES if m in config.regimes)
        if not config.synthetic:
            regimes = ()
    if not base and not regimes:
        raise EvaluationError("nothing to run: no baseline and no synthetic regime selected")
    return base, regimes


def row_key(regime, name, ratio, many_ratios):
    """Give a synthetic row's key: d:NAME, or d:NAME@RATIO when several ratios run."""
    return f"{regime}:{name}@{ratio:g}" if many_ratios else f"{regime}:{name}"


def _check_config(config):
    rs = ratios(config)
    checks = [
        (config.resolution >= 8, f"--resolution must be at least 8, got {config.resolution}"),
        (config.seeds >= 1, f"--seeds must be at least 1, got {config.seeds}"),
        (
            bool(rs) and all(r > 0 for r in rs),
            f"--synthetic_ratio values must be > 0, got {', '.join(f'{r:g}' for r in rs)}",
        ),
        (
            config.synthetic_select in SELECTIONS,
            f"--synthetic_select must be one of {', '.join(SELECTIONS)}",
        ),
        (config.train.iterations >= 1, f"--iterations must be >= 1, got {config.train.iterations}"),
        (config.train.batch_size >= 1, f"--batch_size must be >= 1, got {config.train.batch_size}"),
        (config.max_val is None or config.max_val >= 1, "--max_val must be at least 1"),
        (config.bootstrap_resamples >= 0, "--bootstrap must be >= 0"),
        (config.workers >= 1, f"--workers must be at least 1, got {config.workers}"),
        (
            config.inception_range is None or config.inception_range in fid_lib.INPUT_RANGES,
            f"--inception_range must be one of {', '.join(fid_lib.INPUT_RANGES)}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise EvaluationError(message)
    if len(rs) > 1 and not config.synthetic:
        raise EvaluationError("--synthetic_ratio: several ratios need --synthetic")
    if config.inception_weights and not config.synthetic:
        raise EvaluationError(
            "--inception_weights: FID/KID measure a synthetic set; give --synthetic"
        )


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


def _job(args, kwargs):
    return train_and_score(*args, **kwargs)


def _worker_init():
    torch.set_num_threads(1)


def _run_jobs(jobs, workers, finished):
    """Run [(job id, args, kwargs)] of train_and_score; call finished(job id, result) as each ends."""
    if workers <= 1 or len(jobs) <= 1:
        for job_id, args, kwargs in jobs:
            finished(job_id, _job(args, kwargs))
        return
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=context, initializer=_worker_init
    ) as pool:
        futures = {pool.submit(_job, args, kwargs): job_id for job_id, args, kwargs in jobs}
        for future in concurrent.futures.as_completed(futures):
            finished(futures[future], future.result())


def _jsonable_config(config, sets, baselines, regimes):
    cfg = dataclasses.asdict(config)
    cfg["synthetic"] = [{"name": n, "folder": str(f)} for n, f in sets]
    cfg["baselines"], cfg["regimes"] = list(baselines), list(regimes)
    cfg["modes"] = list(config.modes) if config.modes is not None else None
    cfg["synthetic_ratio"] = list(ratios(config))
    cfg["train"]["channel_mult"] = list(config.train.channel_mult)
    cfg["seed_list"] = list(range(config.seeds))
    return cfg


def _load_sets(config, sets, real, timings):
    """Give per set {folder, pairs, manifest, guard, selections}; refuse on guard problems."""
    out = {}
    if not sets:
        return out
    identity = ValidationIdentity(
        config.data_dir, real.val.names, num_defect=config.num_defect, classes=config.classes
    )
    rs = ratios(config)
    for name, folder in sets:
        t0 = time.perf_counter()
        synthetic = load_synthetic(folder, num_defect=real.num_defect, resolution=config.resolution)
        guard = check_synthetic_set(
            folder,
            synthetic.manifest,
            real=real,
            identity=identity,
            num_train_per_type=config.num_train_per_type,
        )
        if guard["problems"] and not config.allow_overlap:
            raise EvaluationError(guard["problems"][0])
        for problem in guard["problems"]:
            logger.warning("--allow_overlap: %s", problem)
        selections = {}
        for r in rs:
            want = max(1, int(round(r * len(real.train))))
            indices, record = select_synthetic(
                synthetic.pairs.masks,
                real.train.masks,
                num_defect=real.num_defect,
                want=want,
                how=config.synthetic_select,
            )
            record["ratio"] = r
            record["statements"] = shortfall_sentences(record, real.classes)
            for sentence in record["statements"]:
                logger.warning("synthetic set %s, ratio %g: %s", name, r, sentence)
            if not indices:
                raise EvaluationError(
                    f"{folder}: no synthetic pair fits --synthetic_select "
                    f"{config.synthetic_select} (no pair holds a defect of a class the real "
                    "training pairs have)"
                )
            record["files"] = [synthetic.pairs.names[i] for i in indices]
            selections[r] = (synthetic.pairs.subset(indices), record)
            logger.info(
                "synthetic set %s: %d pairs, %d selected (%s) for ratio %g",
                name,
                len(synthetic.pairs),
                len(indices),
                config.synthetic_select,
                r,
            )
        out[name] = dict(
            folder=str(folder), synthetic=synthetic, guard=guard, selections=selections
        )
        timings[f"load_synthetic:{name}"] = time.perf_counter() - t0
    return out


def _plan(baselines, regimes, loaded, rs):
    """Give [(key, family, set name or None, ratio or None)] in report order."""
    plan = [(b, b, None, None) for b in baselines]
    for name in loaded:
        for regime in regimes:
            for r in rs:
                plan.append((row_key(regime, name, r, len(rs) > 1), regime, name, r))
    return plan


def run_evaluation(config):
    """Give the EvaluationResult of `config` (EvaluationError / DatasetError on bad inputs)."""
    _check_config(config)
    sets = synthetic_sets(config)
    baselines, regimes = resolve_rows(config)
    rs = ratios(config)
    timings = {}
    start = time.perf_counter()
    t0 = time.perf_counter()
    real = load_real_split(
        config.data_dir,
        num_train_per_type=config.num_train_per_type,
        resolution=config.resolution,
        num_defect=config.num_defect,
        classes=config.classes,
        max_val=config.max_val,
    )
    timings["load_real"] = time.perf_counter() - t0
    num_classes = real.num_defect + 1
    logger.info(
        "real data: %d classes %s, %d train / %d validation pairs at %d px",
        real.num_defect,
        real.classes,
        len(real.train),
        len(real.val),
        config.resolution,
    )
    loaded = _load_sets(config, sets, real, timings)

    # Same settings, same seeds (hence same initial weights and real batches) and the same loss
    # (class weights from the real training masks) for every row.
    t0 = time.perf_counter()
    weights = class_weights(real.train.masks, num_classes) if config.train.class_balance else None
    plan = _plan(baselines, regimes, loaded, rs)
    jobs, rows_meta = [], {}
    for key, family, name, r in plan:
        if name is None:
            label, description = BASELINES[family]
            syn = None
        else:
            label, description = (t.format(name=name) for t in SYNTHETIC_REGIMES[family])
            syn = loaded[name]["selections"][r][0]
        augment = _augmenter(family, real.train, config)
        rows_meta[key] = (label, description, family, name, r, syn)
        for seed in range(config.seeds):
            kwargs = dict(
                num_classes=num_classes,
                settings=config.train,
                seed=seed,
                device=config.device,
                augment=augment,
                weights=weights,
                synthetic=None if syn is None else (syn.images, syn.masks),
            )
            jobs.append(((key, seed), (real.train.images, real.train.masks, real.val), kwargs))
    results = {}

    def finished(job_id, result):
        results[job_id] = result
        key, seed = job_id
        scores, done, elapsed = result[0], len(results), time.perf_counter() - t0
        logger.info(
            "[%d/%d] %s seed %d: mIoU %.4f, mIoU w/o background %.4f (%.1f s; eta %.0f s)",
            done,
            len(jobs),
            key,
            seed,
            scores["miou"],
            scores["miou_fg"],
            scores["seconds"],
            elapsed / done * (len(jobs) - done),
        )

    _run_jobs(jobs, config.workers, finished)
    rows, per_image = {}, {}
    for key, (label, description, family, name, r, syn) in rows_meta.items():
        runs = [results[key, seed][0] for seed in range(config.seeds)]
        rows[key] = {
            "name": label,
            "description": description,
            "family": family,
            "set": name,
            "ratio": r,
            "real_pool_size": len(real.train),
            "synthetic_pool_size": 0 if syn is None else len(syn),
            "per_seed": runs,
            "summary": summarise(runs, num_classes),
        }
        per_image[key] = np.stack([results[key, seed][1] for seed in range(config.seeds)])
    timings["segmentation"] = time.perf_counter() - t0

    comparisons = {}
    for key, entry in rows.items():
        if entry["set"] is None:
            continue
        comparisons[key] = {}
        for base in COMPARE_WITH:
            if base in rows:
                comparisons[key][base] = compare(
                    entry["per_seed"],
                    rows[base]["per_seed"],
                    per_image[key],
                    per_image[base],
                    num_classes=num_classes,
                    resamples=config.bootstrap_resamples,
                )

    report = {
        "version": REPORT_VERSION,
        "config": _jsonable_config(config, sets, baselines, regimes),
        "environment": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "device": config.device,
            "gpu": torch.cuda.get_device_name(0) if config.device.startswith("cuda") else None,
        },
        "data": {
            "layout": real.layout,
            "classes": ["background"] + list(real.classes),
            "num_defect": real.num_defect,
            "num_train": len(real.train),
            "num_val": len(real.val),
            "train_per_type": _count(real.train.types),
            "val_per_type": _count(real.val.types),
            "train_files": real.train.names,
        },
        "segmentation": {
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
            "per step, so each synthetic pair is drawn as often as each real pair",
            "rows": rows,
            "delta_vs_a": paired_deltas(rows),
            "comparisons": comparisons,
        },
        "synthetic": {},
        "mask_stats": {"train": mask_statistics(real.train.masks, real.num_defect)},
        "timings": timings,
    }

    examples = {}
    for name, item in loaded.items():
        t0 = time.perf_counter()
        report["synthetic"][name], examples[name] = _describe_set(config, name, item, real)
        timings[f"similarity:{name}"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    return EvaluationResult(report=report, examples=examples, classes=["background"] + real.classes)


def _describe_set(config, name, item, real):
    synthetic = item["synthetic"]
    selections = {f"{r:g}": record for r, (_, record) in item["selections"].items()}
    entry = {
        "folder": item["folder"],
        "num_pairs": len(synthetic.pairs),
        "manifest": synthetic.manifest,
        "guard": {
            "problems": item["guard"]["problems"],
            "overridden": bool(item["guard"]["problems"]),
            "generators": item["guard"]["generators"],
        },
        "selection": selections,
        "memorisation": None,
        "diversity": None,
        "mask_stats": mask_statistics(synthetic.pairs.masks, real.num_defect),
        "fid": _fid_not_computed("no --inception_weights given"),
    }
    examples = []
    gen_feats = similarity.thumbnail_features(synthetic.pairs.images)
    train_feats = similarity.thumbnail_features(real.train.images)
    if len(real.train) >= 2:
        mem = similarity.memorisation(
            gen_feats, train_feats, threshold=config.memorisation_threshold
        )
        mem["feature"] = f"{similarity.DEFAULT_FEATURE_SIZE}x{similarity.DEFAULT_FEATURE_SIZE} "
        mem["feature"] += "grayscale, RMS distance per pixel in [0, 1]"
        mem["generated_files"] = synthetic.pairs.names
        entry["memorisation"] = mem
        order = np.argsort(mem["ratio"], kind="stable")[: config.num_examples]
        for g in order:
            t = mem["nn_index"][g]
            # Show the training image as it was matched: mirrored when its mirror was nearer.
            flip = slice(None, None, -1) if mem["nn_mirrored"][g] else slice(None)
            examples.append(
                (
                    synthetic.pairs.images[g],
                    synthetic.pairs.masks[g],
                    real.train.images[t][:, flip],
                    real.train.masks[t][:, flip],
                    mem["ratio"][g],
                    int(g),
                    int(t),
                )
            )
    else:
        logger.warning("memorisation needs at least 2 training images; skipped")
    entry["diversity"] = similarity.diversity(gen_feats, train_feats)
    if config.inception_weights:
        extractor = fid_lib.load_feature_extractor(config.inception_weights, config.device)
        values = fid_lib.fid_kid(
            extractor,
            synthetic.pairs.images,
            {"real_train": real.train.images, "real_val": real.val.images},
            size=config.inception_size,
            input_range=config.inception_range,
            device=config.device,
        )
        entry["fid"] = dict(computed=True, weights=str(config.inception_weights), **values)
    return entry, examples


def _fid_not_computed(reason):
    return {"computed": False, "reason": reason, "fid": None, "kid": None}


def _count(types):
    out = {}
    for t in types:
        out[t] = out.get(t, 0) + 1
    return out
