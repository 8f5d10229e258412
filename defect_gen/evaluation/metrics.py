"""
Segmentation metrics accumulated over a whole validation set.

IoU and Dice are computed from one confusion matrix summed over every validation pixel: for class k,
IoU_k = sum TP_k / (sum TP_k + sum FP_k + sum FN_k) and Dice_k = 2 TP_k / (2 TP_k + FP_k + FN_k),
the sums running over the whole set (not per image). A class that appears neither in the ground
truth nor in the prediction anywhere in the set has an undefined score: it is NaN and left out of
every mean.
"""

import numpy as np


def confusion_matrix(gt, pred, num_classes):
    """
    Give the [C x C] int64 confusion matrix of one batch: rows = ground truth, columns = prediction.

    :param gt: integer array (any shape) with values in 0..C-1.
    :param pred: integer array of gt's shape with values in 0..C-1.
    """
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"gt has {gt.size} pixels but pred has {pred.size}")
    for name, a in (("gt", gt), ("pred", pred)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} values must lie in 0..{num_classes - 1}")
    counts = np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_iou(matrix):
    """Give the [C] float64 IoU per class of a confusion matrix; NaN where TP + FP + FN == 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def per_class_dice(matrix):
    """Give the [C] float64 Dice per class of a confusion matrix; NaN where 2TP + FP + FN == 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    denom = matrix.sum(0) + matrix.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def nanmean_or_nan(values):
    """Give the mean of the non-NaN values, or NaN when there are none (no warning)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def segmentation_scores(matrix):
    """
    Give the scores of a [C x C] confusion matrix (class 0 = background).

    :return: dict with `iou` and `dice` (lists of C floats, NaN = undefined), `miou` (mean IoU over
        defined classes including background), `miou_fg` (same without background), `mdice_fg`
        (mean Dice of defect classes), `mdice` (with background), `pixel_accuracy`.
    """
    matrix = np.asarray(matrix)
    iou = per_class_iou(matrix)
    dice = per_class_dice(matrix)
    total = matrix.sum()
    return {
        "iou": iou.tolist(),
        "dice": dice.tolist(),
        "miou": nanmean_or_nan(iou),
        "miou_fg": nanmean_or_nan(iou[1:]),
        "mdice": nanmean_or_nan(dice),
        "mdice_fg": nanmean_or_nan(dice[1:]),
        "pixel_accuracy": float(np.trace(matrix) / total) if total else float("nan"),
    }


def mean_std(values):
    """
    Give (mean, std) over seeds, ignoring NaN entries; std is the sample std (ddof = 1).

    Both are NaN when no value is defined; std is NaN with a single defined value.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return float("nan"), float("nan")
    std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return float(values.mean()), std
