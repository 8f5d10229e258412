"""
The whole evaluation: data, the four training modes over seeds, memorisation, diversity, mask
statistics and optional FID / KID, gathered into one JSON-able report.
"""

import dataclasses
import logging
import platform
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from defect_gen.evaluation import fid as fid_lib
from defect_gen.evaluation import similarity
from defect_gen.evaluation.augment import CopyPaste, classic_augment
from defect_gen.evaluation.data import EvaluationError, PairSet, load_real_split, load_synthetic
from defect_gen.evaluation.mask_stats import mask_statistics
from defect_gen.evaluation.metrics import mean_std
from defect_gen.evaluation.segnet import SegNet, count_parameters
from defect_gen.evaluation.segtrain import TrainSettings, class_weights, train_and_score

logger = logging.getLogger(__name__)

REPORT_VERSION = 1

MODES = {
    "a": ("real", "real training pairs only"),
    "b": ("real+classic", "real pairs with flips, 90° rotations, brightness/contrast jitter"),
    "c": ("real+copy-paste", "real pairs with real defect regions pasted onto other real images"),
    "d": ("real+synthetic", "real pairs plus Defect-Gen synthetic pairs"),
}

SEGMENTATION_KEYS = ("miou", "miou_fg", "mdice", "mdice_fg", "pixel_accuracy")


@dataclass
class EvalConfig:
    """Everything the evaluation depends on (written into the report as given)."""

    data_dir: str
    num_train_per_type: int = 5
    synthetic: Optional[str] = None
    resolution: int = 128
    seeds: int = 3
    modes: Optional[tuple] = None  # None: a, b, c, plus d when `synthetic` is given
    synthetic_ratio: float = 1.0
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
    train: TrainSettings = field(default_factory=TrainSettings)


@dataclass
class EvaluationResult:
    """The report (JSON-able dict) and the pictures the figure needs."""

    report: dict
    examples: list  # (gen image, gen mask, train image, train mask, ratio, gen index, train index)
    classes: list


def resolve_modes(config):
    """Give the tuple of modes to run; raise EvaluationError for unknown ones or d without data."""
    if config.modes is None:
        return ("a", "b", "c", "d") if config.synthetic else ("a", "b", "c")
    modes = tuple(dict.fromkeys(m.strip() for m in config.modes if m.strip()))
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise EvaluationError(f"--modes: unknown mode {unknown or modes!r}; choose from a, b, c, d")
    if "d" in modes and not config.synthetic:
        raise EvaluationError("--modes: mode d (real+synthetic) needs --synthetic DIR")
    return modes


def _check_config(config):
    checks = [
        (config.resolution >= 8, f"--resolution must be at least 8, got {config.resolution}"),
        (config.seeds >= 1, f"--seeds must be at least 1, got {config.seeds}"),
        (
            config.synthetic_ratio > 0,
            f"--synthetic_ratio must be > 0, got {config.synthetic_ratio}",
        ),
        (config.train.iterations >= 1, f"--iterations must be >= 1, got {config.train.iterations}"),
        (config.train.batch_size >= 1, f"--batch_size must be >= 1, got {config.train.batch_size}"),
        (config.max_val is None or config.max_val >= 1, "--max_val must be at least 1"),
        (
            config.inception_range is None or config.inception_range in fid_lib.INPUT_RANGES,
            f"--inception_range must be one of {', '.join(fid_lib.INPUT_RANGES)}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise EvaluationError(message)


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


def paired_deltas(modes_report, base="a"):
    """Give per mode other than `base` the mean / std over seeds of (mode - base) mIoU scores."""
    if base not in modes_report:
        return {}
    base_runs = {r["seed"]: r for r in modes_report[base]["per_seed"]}
    out = {}
    for mode, entry in modes_report.items():
        if mode == base:
            continue
        out[mode] = {}
        for key in ("miou", "miou_fg", "mdice_fg"):
            diffs = [r[key] - base_runs[r["seed"]][key] for r in entry["per_seed"]]
            mean, std = mean_std(diffs)
            out[mode][key] = {"mean": mean, "std": std, "per_seed": diffs}
    return out


def _synthetic_subset(synthetic, num_real, ratio):
    want = int(round(ratio * num_real))
    if want > len(synthetic):
        logger.warning(
            "synthetic_ratio %.3g asks for %d synthetic pairs but the folder has %d; using all",
            ratio,
            want,
            len(synthetic),
        )
        want = len(synthetic)
    return synthetic.subset(range(max(1, want)))


def _augmenter(mode, pool, config):
    if mode == "b":
        return lambda _i, image, mask, rng: classic_augment(image, mask, rng)
    if mode == "c":
        return CopyPaste(pool.images, pool.masks, probability=config.copy_paste_probability)
    return None


def _jsonable_config(config, modes):
    cfg = dataclasses.asdict(config)
    cfg["modes"] = list(modes)
    cfg["train"]["channel_mult"] = list(config.train.channel_mult)
    cfg["seed_list"] = list(range(config.seeds))
    return cfg


def run_evaluation(config):
    """Give the EvaluationResult of `config` (EvaluationError / DatasetError on bad inputs)."""
    _check_config(config)
    modes = resolve_modes(config)
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

    synthetic, synth_used = None, None
    if config.synthetic:
        t0 = time.perf_counter()
        synthetic = load_synthetic(
            config.synthetic, num_defect=real.num_defect, resolution=config.resolution
        )
        synth_used = _synthetic_subset(synthetic.pairs, len(real.train), config.synthetic_ratio)
        timings["load_synthetic"] = time.perf_counter() - t0
        logger.info(
            "synthetic data: %d pairs, %d used for mode d (ratio %.3g)",
            len(synthetic.pairs),
            len(synth_used),
            config.synthetic_ratio,
        )

    # Segmentation: same settings, same seeds (hence same initial weights) and the same loss (class
    # weights from the real training masks) for every mode.
    t0 = time.perf_counter()
    weights = class_weights(real.train.masks, num_classes) if config.train.class_balance else None
    modes_report = {}
    for mode in modes:
        pool = PairSet.concat(real.train, synth_used) if mode == "d" else real.train
        augment = _augmenter(mode, pool, config)
        runs = []
        for seed in range(config.seeds):
            scores = train_and_score(
                pool.images,
                pool.masks,
                real.val,
                num_classes=num_classes,
                settings=config.train,
                seed=seed,
                device=config.device,
                augment=augment,
                weights=weights,
            )
            logger.info(
                "mode %s (%s) seed %d: mIoU %.4f, mIoU w/o background %.4f (%.1f s)",
                mode,
                MODES[mode][0],
                seed,
                scores["miou"],
                scores["miou_fg"],
                scores["seconds"],
            )
            runs.append(scores)
        modes_report[mode] = {
            "name": MODES[mode][0],
            "description": MODES[mode][1],
            "pool_size": len(pool),
            "per_seed": runs,
            "summary": summarise(runs, num_classes),
        }
    timings["segmentation"] = time.perf_counter() - t0

    report = {
        "version": REPORT_VERSION,
        "config": _jsonable_config(config, modes),
        "environment": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "device": config.device,
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
            "num_synthetic": len(synthetic.pairs) if synthetic else None,
            "num_synthetic_used": len(synth_used) if synth_used is not None else None,
            "synthetic_manifest": synthetic.manifest if synthetic else None,
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
            "modes": modes_report,
            "delta_vs_a": paired_deltas(modes_report),
        },
        "memorisation": None,
        "diversity": None,
        "mask_stats": {"train": mask_statistics(real.train.masks, real.num_defect)},
        "fid": _fid_not_computed("no --inception_weights given"),
        "timings": timings,
    }

    examples = []
    if synthetic is not None:
        t0 = time.perf_counter()
        gen_feats = similarity.thumbnail_features(synthetic.pairs.images)
        train_feats = similarity.thumbnail_features(real.train.images)
        if len(real.train) >= 2:
            mem = similarity.memorisation(
                gen_feats, train_feats, threshold=config.memorisation_threshold
            )
            mem["feature"] = f"{similarity.DEFAULT_FEATURE_SIZE}x{similarity.DEFAULT_FEATURE_SIZE} "
            mem["feature"] += "grayscale, RMS distance per pixel in [0, 1]"
            mem["generated_files"] = synthetic.pairs.names
            report["memorisation"] = mem
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
        report["diversity"] = similarity.diversity(gen_feats, train_feats)
        report["mask_stats"]["synthetic"] = mask_statistics(synthetic.pairs.masks, real.num_defect)
        timings["similarity"] = time.perf_counter() - t0

        if config.inception_weights:
            t0 = time.perf_counter()
            extractor = fid_lib.load_feature_extractor(config.inception_weights, config.device)
            values = fid_lib.fid_kid(
                extractor,
                synthetic.pairs.images,
                {"real_train": real.train.images, "real_val": real.val.images},
                size=config.inception_size,
                input_range=config.inception_range,
                device=config.device,
            )
            report["fid"] = dict(computed=True, weights=str(config.inception_weights), **values)
            timings["fid"] = time.perf_counter() - t0
    elif config.inception_weights:
        report["fid"] = _fid_not_computed("no --synthetic folder given")
    timings["total"] = time.perf_counter() - start
    return EvaluationResult(report=report, examples=examples, classes=["background"] + real.classes)


def _fid_not_computed(reason):
    return {"computed": False, "reason": reason, "fid": None, "kid": None}


def _count(types):
    out = {}
    for t in types:
        out[t] = out.get(t, 0) + 1
    return out
