"""Per-class statistics of a set of class-index masks, to compare generated masks with real ones."""

import numpy as np


def mask_statistics(masks, num_defect):
    """
    Give per-class mask statistics of [N x H x W] class-index masks, for classes 1..num_defect.

    :return: dict with lists of num_defect floats: `frequency` (share of masks containing the
        class), `mean_area` (mean fraction of the image the class covers, over masks containing it;
        NaN when none does), `pixel_share` (fraction of all pixels of the set); plus `defect_free`
        (share of masks with no defect pixel) and `count` (N).
    """
    masks = np.asarray(masks)
    n = len(masks)
    flat = masks.reshape(n, -1).astype(np.int64)
    pixels = flat.shape[1] if n else 1
    counts = (
        np.stack([np.bincount(m, minlength=num_defect + 1)[: num_defect + 1] for m in flat])
        if n
        else np.zeros((0, num_defect + 1), np.int64)
    )
    area = counts[:, 1:] / pixels
    present = counts[:, 1:] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_area = np.where(present.any(0), (area * present).sum(0) / present.sum(0), np.nan)
    return {
        "count": n,
        "frequency": (present.mean(0) if n else np.full(num_defect, np.nan)).tolist(),
        "mean_area": mean_area.tolist(),
        "pixel_share": (area.mean(0) if n else np.full(num_defect, np.nan)).tolist(),
        "defect_free": float((~present.any(1)).mean()) if n else float("nan"),
    }
