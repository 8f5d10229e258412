"""
Statistics of class-index masks (the one format of training, sampling and evaluation) and the mask-loss
class weights derived from them.
"""

import numpy as np


def mask_statistics(index_maps, num_defect):
    """
    Give per-class statistics of class-index masks: the one format of training, sampling and evaluation.

    Every list has ``num_defect + 1`` entries, background first, then classes 1..K.

    :param index_maps: an iterable (a generator is fine) of [H x W] integer arrays with values in
        0..num_defect; masks may differ in size. A value above num_defect raises ValueError: a caller
        that knows the file checks first, to name it.
    :return: {"num_images": n,
        "share_with_class": fraction of the masks holding class k,
        "mean_area": mean fraction of a mask's pixels in class k, over all masks,
        "mean_area_present": the same mean over the masks holding class k (None where none does),
        "defect_free": fraction of the masks with no defect pixel}. With no masks the fractions are
        None. Plain floats, so the dict goes into JSON and checkpoints as it is.
    """
    k1 = num_defect + 1
    n = 0
    holding = np.zeros(k1)
    area = np.zeros(k1)
    defect_free = 0
    for index_map in index_maps:
        flat = np.asarray(index_map).ravel()
        if flat.size and (flat.min() < 0 or flat.max() > num_defect):
            raise ValueError(
                f"mask value {int(flat.max() if flat.max() > num_defect else flat.min())} is outside "
                f"the classes 0..{num_defect}"
            )
        counts = np.bincount(flat.astype(np.int64), minlength=k1)
        present = counts > 0
        holding += present
        area += counts / max(flat.size, 1)
        defect_free += not present[1:].any()
        n += 1
    if n == 0:
        return {
            "num_images": 0,
            "share_with_class": [None] * k1,
            "mean_area": [None] * k1,
            "mean_area_present": [None] * k1,
            "defect_free": None,
        }
    return {
        "num_images": n,
        "share_with_class": (holding / n).tolist(),
        "mean_area": (area / n).tolist(),
        "mean_area_present": [float(a / h) if h else None for a, h in zip(area, holding)],
        "defect_free": defect_free / n,
    }


def mask_class_weights(mean_area, power, cap):
    """
    Give per-class mask-loss weights [K + 1] (background first) from the classes' pixel shares.

    w_k = min(cap, (a_max / a_k) ** power), a_k the mean share of the masks' pixels in class k
    (:func:`defect_gen.data.stats.mask_statistics`' "mean_area") and a_max the largest share (usually background, weight 1):
    a class 100 times rarer than background weighs 10 at power 0.5. A class with no pixels in the
    training masks never is a target; it gets weight 1. Plain floats, rounded to 6 significant digits
    so that they survive a YAML/JSON round trip unchanged.
    """
    if power < 0 or cap < 1:
        raise ValueError(f"need power >= 0 and cap >= 1, got power {power} and cap {cap}")
    area = [float(a) for a in mean_area]
    top = max(area)
    if top <= 0:
        raise ValueError("the training masks hold no pixels")
    return [float(f"{min(cap, (top / a) ** power):.6g}") if a > 0 else 1.0 for a in area]
