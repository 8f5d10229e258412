"""
Paired comparisons of two regimes: per-seed deltas with a t-based 95% interval, a bootstrap over
validation images as a second interval, and the verdict words that follow the interval.

Both regimes of a comparison train with the same seeds, hence the same initial weights and the same
real batches, so the per-seed difference is the paired quantity. The t interval answers "would
another set of segmenter seeds change the sign?"; the bootstrap resamples the validation images
(the same resample for both regimes and every seed) and answers "would other validation images?".
"""

import math

import numpy as np

# Two-sided 95% quantiles t_{0.975, df} of Student's t for df = 1 .. 30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df):
    """Give t_{0.975} of Student's t, `df` degrees of freedom (table to 30, then 1.96 + 2.4/df)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.959964 + 2.4 / df


def paired_interval(deltas):
    """
    Give {mean, std, lo, hi, n} of per-seed deltas: mean ± t_{0.975, n-1} std / sqrt(n).

    NaN deltas (a score undefined in one of the runs) are left out; lo / hi are NaN with fewer than
    two defined deltas.
    """
    values = np.asarray(deltas, dtype=np.float64)
    values = values[~np.isnan(values)]
    n = int(values.size)
    if not n:
        return {"mean": math.nan, "std": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "std": math.nan, "lo": math.nan, "hi": math.nan, "n": n}
    std = float(values.std(ddof=1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "lo": mean - half, "hi": mean + half, "n": n}


def _miou_fg(matrices):
    """Give mIoU without background of [... x C x C] confusion matrices (NaN classes skipped)."""
    tp = np.diagonal(matrices, axis1=-2, axis2=-1).astype(np.float64)
    union = matrices.sum(-1) + matrices.sum(-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)[..., 1:]
    defined = ~np.isnan(iou)
    count = defined.sum(-1)
    total = np.where(defined, iou, 0.0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bootstrap_interval(per_image_row, per_image_base, *, num_resamples=2000, seed=0):
    """
    Give {mean, lo, hi, num_resamples}: the 2.5 / 97.5 percentiles of the seed-mean mIoU-without-
    background delta (row - base) over validation sets resampled with replacement.

    :param per_image_row, per_image_base: int [S x V x C x C] per-seed, per-image confusion matrices
        of the two regimes (same seeds in the same order, same validation images).
    """
    row = np.asarray(per_image_row, dtype=np.float64)
    base = np.asarray(per_image_base, dtype=np.float64)
    if row.shape != base.shape or row.ndim != 4:
        raise ValueError(f"per-image confusions differ in shape: {row.shape} vs {base.shape}")
    num_val = row.shape[1]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_val, (num_resamples, num_val))
    counts = np.stack([np.bincount(d, minlength=num_val) for d in draws]).astype(np.float64)
    # [S x R x C x C]: each resample's confusion matrix, per seed.
    row_m = np.einsum("rv,svcd->srcd", counts, row)
    base_m = np.einsum("rv,svcd->srcd", counts, base)
    delta = np.nanmean(_miou_fg(row_m) - _miou_fg(base_m), axis=0) if len(row) else np.array([])
    delta = delta[~np.isnan(delta)]
    full = np.nanmean(_miou_fg(row.sum(1)) - _miou_fg(base.sum(1))) if len(row) else math.nan
    if not delta.size:
        return {"mean": float(full), "lo": math.nan, "hi": math.nan, "num_resamples": 0}
    lo, hi = np.percentile(delta, [2.5, 97.5])
    return {"mean": float(full), "lo": float(lo), "hi": float(hi), "num_resamples": num_resamples}


def verdict(lo, hi):
    """Give "helps" (interval above 0), "hurts" (below 0), "no measurable effect", None."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return None
    if lo > 0:
        return "helps"
    if hi < 0:
        return "hurts"
    return "no measurable effect"
