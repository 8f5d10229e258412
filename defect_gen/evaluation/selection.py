"""
Which synthetic pairs a regime uses: `first` (file order), `defect` (only pairs whose mask holds a
defect), `balanced` (defect pairs filling per-class quotas in proportion to the real training
set's class shares, in file order), `scored` (the same quotas, each filled with the class's
highest-scoring pairs: defect_gen.sampling.score, how clearly the image shows its mask) or
`realistic` (the same quotas, each filled with the pairs nearest the real training pairs of their
class by step and texture: defect_gen.evaluation.realism).

A pair's class is its mask's dominant defect class (most pixels; ties to the lower index); a mask
without defect pixels has class 0. Quotas split the wanted count by the largest-remainder rule.
"""

import numpy as np

SELECTIONS = ("first", "defect", "balanced", "scored", "realistic")


def dominant_classes(masks, num_defect):
    """Give int [N]: each [H x W] mask's most frequent defect class (0 when it holds none)."""
    masks = np.asarray(masks)
    out = np.zeros(len(masks), dtype=np.int64)
    for i, mask in enumerate(masks):
        counts = np.bincount(mask.ravel(), minlength=num_defect + 1)[1 : num_defect + 1]
        if counts.any():
            out[i] = int(np.argmax(counts)) + 1
    return out


def largest_remainder(total, shares):
    """
    Give int quotas summing to `total` in proportion to `shares` (largest remainders get the rest;
    ties go to the lower index). All-zero shares give all-zero quotas.
    """
    shares = np.asarray(shares, dtype=np.float64)
    if shares.sum() <= 0 or total <= 0:
        return [0] * len(shares)
    exact = total * shares / shares.sum()
    quotas = np.floor(exact).astype(np.int64)
    order = sorted(range(len(shares)), key=lambda k: (-(exact[k] - quotas[k]), k))
    for k in order[: total - int(quotas.sum())]:
        quotas[k] += 1
    return [int(q) for q in quotas]


def select_synthetic(
    syn_masks, real_masks, *, num_defect, want, how, scores=None, distances=None
):
    """
    Give (indices, record) of the synthetic pairs a regime uses.

    :param syn_masks: [M x H x W] synthetic class-index masks, in file order.
    :param real_masks: [N x H x W] real training masks (their class shares set the quotas).
    :param want: the number of pairs asked for (round(ratio * N)).
    :param how: one of SELECTIONS.
    :param scores: for `scored`, [M] pair scores (None: no defect); higher is kept first, ties in
        file order.
    :param distances: for `realistic`, [M] realism distances (None: not measurable); lower is kept
        first, ties in file order.
    :return: indices in file order; record {how, want, used, per_class: [{class, quota, available,
        used}] (class 1..K), defect_free_available, shortfalls: [plain sentences]}.
    """
    if how not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {how!r}")
    syn_cls = dominant_classes(syn_masks, num_defect)
    available = np.bincount(syn_cls, minlength=num_defect + 1)
    quotas = None
    if how == "first":
        indices = list(range(min(want, len(syn_cls))))
    elif how == "defect":
        indices = [i for i in range(len(syn_cls)) if syn_cls[i] > 0][:want]
    else:
        real_cls = dominant_classes(real_masks, num_defect)
        shares = np.bincount(real_cls, minlength=num_defect + 1)[1:]
        quotas = largest_remainder(want, shares)
        taken = [0] * num_defect
        indices = []
        order = range(len(syn_cls))
        if how in ("scored", "realistic"):
            what, values, sign = {
                "scored": ("score", scores, -1),  # highest first
                "realistic": ("realism distance", distances, 1),  # nearest first
            }[how]
            if values is None or len(values) != len(syn_cls):
                raise ValueError(f"selection {how} needs one {what} per synthetic pair")
            # None (nothing to rank) goes last; sorted() keeps file order among ties
            order = sorted(order, key=lambda i: np.inf if values[i] is None else sign * values[i])
        for i in order:
            k = syn_cls[i]
            if k and taken[k - 1] < quotas[k - 1]:
                taken[k - 1] += 1
                indices.append(i)
        indices.sort()
    used = np.bincount(syn_cls[indices], minlength=num_defect + 1) if indices else None
    if used is None:
        used = np.zeros(num_defect + 1, np.int64)
    per_class = [
        {
            "class": k,
            "quota": None if quotas is None else quotas[k - 1],
            "available": int(available[k]),
            "used": int(used[k]),
        }
        for k in range(1, num_defect + 1)
    ]
    shortfalls = []
    if quotas is not None:
        shortfalls = [
            (k, q, int(available[k])) for k, q in enumerate(quotas, 1) if available[k] < q
        ]
    elif len(indices) < want:
        pool = "pairs" if how == "first" else "pairs holding a defect"
        shortfalls = [(None, want, len(indices), pool)]
    record = {
        "how": how,
        "want": int(want),
        "used": len(indices),
        "available": int(len(syn_cls)),
        "per_class": per_class,
        "defect_free_available": int(available[0]),
        "defect_free_used": int(used[0]),
        "shortfalls": shortfalls,
    }
    return indices, record


def shortfall_sentences(record, classes):
    """Give plain sentences for each class (or the whole set) that could not be filled."""
    out = []
    for item in record["shortfalls"]:
        if item[0] is None:
            _, want, got, pool = item
            out.append(f"asked for {want} pairs but the folder holds only {got} {pool}; all used")
        else:
            k, quota, got = item
            out.append(
                f"class {classes[k - 1]} cannot be filled: quota {quota}, only {got} synthetic "
                f"pair(s) of that class available"
            )
    return out
