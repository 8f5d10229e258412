"""
What each row trains on (issue 20): the real stream, its augmentation, and the good-image stream.

    a        real pairs alone
    a+good   real pairs + the good images as all-background negatives (a third stream, segtrain)
    b        real pairs with classic augmentation (unchanged)
    c        copy-paste. --copy_paste_target good (default): real pairs as in (a) + the good images,
             each drawn good image getting, with --copy_paste_probability, one real defect region
             (flipped, rotated by k * 90 degrees, scaled 0.75-1.25, placed fully inside, blended by
             --copy_paste_blend alpha|poisson over --copy_paste_feather px); its exposure is
             (a+good)'s. `defective`: today's variant, regions pasted pixel-exactly onto the other
             real pairs (no good images). `both`: onto the good images and the real pairs.
    d:SET    real pairs + the set (+ the good images when --with_good 1, as the chosen (a) does)
    e:SET    (c)'s streams + the set

Baseline (a) is the better of `a` and `a+good` by mean mIoU without background over seeds
(`best_row`); every synthetic row is compared with that row and with (c).
"""

import math

from .augment import CopyPaste
from .good import PasteOnto

A_ROWS = ("a", "a+good")
GOOD_ROW = ("real+good", "real pairs + good images as all-background negatives (a third stream)")
C_DESCRIPTIONS = {
    "good": "real pairs + good images with real defect regions pasted onto the good images "
    "(flip, k*90° rotation, scale 0.75-1.25; blend {blend}, feather {feather:g} px, "
    "probability {p:g})",
    "defective": "real pairs with real defect regions pasted onto other real pairs (pixel-exact, "
    "probability {p:g}; the pre-issue-20 variant)",
    "both": "real pairs + good images, real defect regions pasted onto both (blend {blend}, "
    "feather {feather:g} px, probability {p:g})",
}


def effective_target(config, num_good):
    """Give the copy-paste target used: `good` / `both` fall back to `defective` without goods."""
    if config.copy_paste_target in ("good", "both") and not num_good:
        return "defective"
    return config.copy_paste_target


def c_description(config, target):
    return C_DESCRIPTIONS[target].format(
        blend=config.copy_paste_blend,
        feather=config.copy_paste_feather,
        p=config.copy_paste_probability,
    )


def streams(family, real_train, good, config):
    """
    Give (augment, extra train_and_score kwargs) of a row family.

    :param real_train: data.PairSet of the real training pairs (the paste sources).
    :param good: data.PairSet of the good images (may be empty).
    """
    num_good = len(good)
    good_kwargs = {"good": good.images} if num_good else {}
    if family == "a+good":
        return None, dict(good_kwargs)
    if family == "d":
        return None, dict(good_kwargs) if config.with_good else {}
    if family not in ("c", "e"):
        return None, {}
    target = effective_target(config, num_good)
    settings = dict(
        probability=config.copy_paste_probability,
        blend=config.copy_paste_blend,
        feather=config.copy_paste_feather,
    )
    if target == "defective":
        p = settings["probability"]
        return CopyPaste(real_train.images, real_train.masks, probability=p), {}
    paste = PasteOnto(real_train.images, real_train.masks, **settings)
    extra = dict(good_kwargs, good_augment=paste)
    if target == "both":
        return PasteOnto(real_train.images, real_train.masks, exclude_self=True, **settings), extra
    return None, extra


def mean_fg(row):
    """Give a row's mean mIoU without background over seeds (NaN when unknown)."""
    value = row["summary"]["miou_fg"]["mean"]
    return math.nan if value is None else float(value)


def best_row(rows, candidates=A_ROWS):
    """
    Give the key among `candidates` present in `rows` with the highest mean mIoU without background
    (NaN ranks lowest; ties go to the earlier candidate); None when none is present.
    """
    present = [k for k in candidates if k in rows]
    if not present:
        return None
    return max(
        present,
        key=lambda k: (
            -math.inf if math.isnan(mean_fg(rows[k])) else mean_fg(rows[k]),
            -present.index(k),
        ),
    )
