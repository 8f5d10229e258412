"""
How much a generated defect looks like the real ones of its class, measured on pixels only.

Per pair (and its class: the mask's most frequent defect class) three measures, in gray levels:

- score: the sample score (``defect_gen.sampling.score``: the mask's border contrast minus its chance
  level), so how strongly the region stands out from its surroundings;
- step: the mean gray level inside the mask minus the mean in a ring around it (signed: dark defects
  are below 0);
- texture: the fine texture inside the mask (mean |gray - its 3 x 3 mean|) over the same outside it:
  1 is the surface's own texture, a region drawn flat is well below 1.

The real training pairs of a class give its reference: the median step and log texture, and their
spreads. A generated pair's distance to its class is the sum of its step's and its log texture's
distances to the medians, each in units of the real pairs' spread. ``--synthetic_select realistic``
fills each class's quota with its nearest pairs: the defects as dark, as large a step and as grainy as
the real ones, neither the caricatures nor the faint regions a generator also draws. Only the training
pairs are read, never the images a report scores.
"""

import numpy as np

from ..sampling.checks import ring_around
from ..sampling.score import default_ring, pair_score, to_gray
from ..sampling.seam import fine_detail

# A spread below these (gray levels; log texture ratio) is taken as these: 5 real pairs of a class
# may agree closely, and a zero spread would make any difference infinitely far.
MIN_STEP_SPREAD = 2.0
MIN_LOG_TEXTURE_SPREAD = 0.1


def _step_and_texture(gray, index_map):
    """Give (class, step, texture) of one pair (see the module's text); None without a defect."""
    mask = index_map > 0
    if not mask.any() or mask.all():
        return None
    cls = int(np.bincount(index_map[mask]).argmax())
    ring = default_ring(max(mask.shape))
    step = gray[mask].mean() - gray[ring_around(mask, ring)].mean()
    texture = np.abs(fine_detail(gray))
    outside = texture[~mask].mean()
    ratio = float(texture[mask].mean() / outside) if outside > 0 else float("nan")
    return cls, float(step), ratio


def pair_measures(rgb, index_map):
    """
    Give (class, score, step, texture) of one pair (see the module's text); None without a defect.

    :param rgb: uint8 [H x W x 3]; :param index_map: integer [H x W] class map (0 = background).
    """
    index_map = np.asarray(index_map)
    gray = to_gray(rgb)
    measures = _step_and_texture(gray, index_map)
    if measures is None:
        return None
    cls, step, ratio = measures
    return cls, pair_score(gray, index_map), step, ratio


def _class_step_log_texture(rgb, index_map):
    """Give (class, step, log texture) of one pair; None without a defect or a texture to measure."""
    measures = _step_and_texture(to_gray(rgb), np.asarray(index_map))
    if measures is None or not (np.isfinite(measures[2]) and measures[2] > 0):
        return None
    cls, step, ratio = measures
    return cls, step, float(np.log(ratio))


def _robust_spread(values, floor):
    """Give the median absolute deviation of `values` scaled to a normal's std, at least `floor`."""
    values = np.asarray(values, dtype=np.float64)
    mad = 1.4826 * np.median(np.abs(values - np.median(values)))
    return max(float(mad), floor)


def class_references(images, masks, num_defect):
    """
    Give {class: (median step, step spread, median log texture, log texture spread)} of the real
    pairs, for every class 1..num_defect that is some pair's class.
    """
    per_class = {}
    for rgb, index_map in zip(images, masks):
        m = _class_step_log_texture(rgb, index_map)
        if m is not None and 1 <= m[0] <= num_defect:
            per_class.setdefault(m[0], []).append(m[1:])
    refs = {}
    for k, rows in sorted(per_class.items()):
        steps, logs = np.array(rows).T
        refs[k] = (
            float(np.median(steps)),
            _robust_spread(steps, MIN_STEP_SPREAD),
            float(np.median(logs)),
            _robust_spread(logs, MIN_LOG_TEXTURE_SPREAD),
        )
    return refs


def realism_distances(images, masks, references):
    """
    Give [distance or None] of each pair to its class's reference (see the module's text); None for
    a pair without a defect, of a class the references lack, or with no texture to measure.
    """
    out = []
    for rgb, index_map in zip(images, masks):
        m = _class_step_log_texture(rgb, index_map)
        if m is None or m[0] not in references:
            out.append(None)
            continue
        cls, step, log_texture = m
        step_med, step_spread, log_med, log_spread = references[cls]
        distance = abs(step - step_med) / step_spread + abs(log_texture - log_med) / log_spread
        out.append(round(float(distance), 4))
    return out
