"""
What an evaluation runs: its settings (EvalConfig), the rows they select (baselines a..c, synthetic
regimes d / e per set and ratio) and the checks on both, made before any data is read.
"""

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from ..errors import EvaluationError
from . import amount, good, similarity
from . import fid as fid_lib
from .data import load_real_split
from .segtrain import TrainSettings
from .selection import SELECTIONS

BASELINES = {
    "a": ("real", "real training pairs only"),
    "b": ("real+classic", "real pairs with flips, 90° rotations, brightness/contrast jitter"),
    "c": (
        "real+copy-paste",
        "real pairs + good images with real defect regions pasted onto the good images",
    ),
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
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass
class EvalConfig:
    """Everything the evaluation depends on (written into the report as given)."""

    data_dir: str
    num_train_per_type: int = 5
    # [(name, folder), ...]; a bare folder string is one set named by the folder's base name.
    synthetic: object = None
    resolution: int = 128
    seeds: int = 10
    first_seed: int = 0  # the rows train seeds first_seed .. first_seed + seeds - 1
    baselines: tuple = ("a", "b", "c")
    regimes: tuple = ("d", "e")
    modes: Optional[tuple] = None  # letters out of a..e; when given, replaces baselines / regimes
    synthetic_ratio: object = None  # one float or a sequence: one row per ratio (None: 1)
    # Distinct synthetic pairs per row and their share of each batch (amount.py); None: by ratio.
    synthetic_count: object = None
    synthetic_share: object = None
    synthetic_select: str = "balanced"
    allow_overlap: bool = False
    bootstrap_resamples: int = 2000
    num_defect: Optional[int] = None
    classes: Optional[list] = None
    max_val: Optional[int] = None
    device: str = "cpu"
    copy_paste_probability: float = 0.5
    # Baseline (c) and the good images (good.py): None = every good image on the training side.
    num_good: Optional[int] = None
    copy_paste_target: str = "good"  # good | defective (the old variant) | both
    copy_paste_blend: str = "alpha"  # alpha | poisson
    copy_paste_feather: float = 2.0  # px at `resolution`
    with_good: bool = True  # synthetic rows (d) draw the good images too, as the chosen (a) does
    memorisation_threshold: float = similarity.DEFAULT_THRESHOLD
    inception_weights: Optional[str] = None
    inception_size: int = 299
    inception_range: Optional[str] = None  # None: by extractor kind (fid.default_input_range)
    num_examples: int = 8
    # Segmenter trainings run at once, each in its own process (1: in this process). On a GPU a few
    # workers share it well: the segmenter is small. Results do not depend on the number.
    workers: int = 1
    # Folder of finished trainings (jobs.ResultCache): a re-run trains only what is missing.
    # None: off.
    cache_dir: Optional[str] = None
    train: TrainSettings = field(default_factory=TrainSettings)

    def real_split(self, *, load_val=True):
        """
        Give the data.RealSplit of `data_dir` these settings select.

        :param load_val: False leaves the validation images unread (and `max_val` unused): the tuning
            mode never looks at the reported images.
        """
        return load_real_split(
            self.data_dir,
            num_train_per_type=self.num_train_per_type,
            resolution=self.resolution,
            num_defect=self.num_defect,
            classes=self.classes,
            max_val=self.max_val if load_val else None,
            load_val=load_val,
        )


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
    if value is None:
        return (1.0,)
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


def seed_list(config):
    """Give the seeds every row trains: first_seed, first_seed + 1, ... (config.seeds of them)."""
    return range(config.first_seed, config.first_seed + config.seeds)


def check_config(config):
    """Raise EvaluationError for the first setting out of range (before any data is read)."""
    rs = ratios(config)
    checks = [
        (config.resolution >= 8, f"--resolution must be at least 8, got {config.resolution}"),
        (config.seeds >= 1, f"--seeds must be at least 1, got {config.seeds}"),
        (config.first_seed >= 0, f"--first_seed must be >= 0, got {config.first_seed}"),
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
    _check_good_and_amounts(config)
    if len(rs) > 1 and not config.synthetic:
        raise EvaluationError("--synthetic_ratio: several ratios need --synthetic")
    if config.inception_weights and not config.synthetic:
        raise EvaluationError(
            "--inception_weights: FID/KID measure a synthetic set; give --synthetic"
        )


def jsonable_config(config, sets, baselines, regimes):
    """Give the config as the report records it: plain lists, the sets named, the seeds listed."""
    cfg = dataclasses.asdict(config)
    cfg["synthetic"] = [{"name": n, "folder": str(f)} for n, f in sets]
    cfg["baselines"], cfg["regimes"] = list(baselines), list(regimes)
    cfg["modes"] = list(config.modes) if config.modes is not None else None
    cfg["synthetic_ratio"] = list(ratios(config))
    cfg["train"]["channel_mult"] = list(config.train.channel_mult)
    cfg["seed_list"] = list(seed_list(config))
    return cfg


def row_plan(baselines, regimes, loaded, rs):
    """
    Give [(key, family, set name or None, amount or None)] in report order.

    :param rs: synthetic ratios (floats) or amount.Amount rows; an Amount with a count or a share
        gets the key REGIME:NAME@n=COUNT,share=SHARE.
    """
    plan = [(b, b, None, None) for b in baselines]
    for name in loaded:
        for regime in regimes:
            for r in rs:
                if getattr(r, "count", None) is not None or getattr(r, "share", None) is not None:
                    key = f"{regime}:{name}@{r.suffix()}"
                else:
                    ratio = getattr(r, "ratio", r)
                    key = row_key(regime, name, ratio, len(rs) > 1)
                plan.append((key, regime, name, r))
    return plan


def _check_good_and_amounts(config):
    """The checks of the good-image, copy-paste and synthetic-amount settings (issue 20)."""

    n = config.num_good
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise EvaluationError(f"--num_good must be an integer >= 0, got {n!r}")
    good.check_good_settings(
        config.copy_paste_probability,
        config.copy_paste_blend,
        config.copy_paste_feather,
        config.copy_paste_target,
    )
    amount.check_amounts(config, config.synthetic_ratio is not None)
