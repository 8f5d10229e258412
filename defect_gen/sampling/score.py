"""
A score for every generated pair: does the image show something where its mask says there is a defect?

The score is the mask's border contrast (how much the gray level inside the mask differs from a ring
around it) minus the same contrast of the mask moved elsewhere in the image (the chance level of that
image), in gray levels. A mask lying on a visible defect scores high; a mask the image does not show
scores near 0 or below. ``scripts/sample.py`` records it for every sample in ``manifest.json`` and
``--min_score`` keeps only candidates that reach a threshold.
"""

import numpy as np

from ..fileio import read_png
from .checks import mask_contrast
from .folder import sample_files

# The chance level: the mask rolled by these fractions of the image's height and width.
CHANCE_SHIFTS = ((1 / 3, 1 / 3), (2 / 3, 2 / 3), (1 / 3, 2 / 3), (2 / 3, 1 / 3))


def default_ring(size):
    """Give the ring width in pixels for images of side `size`: 2 px up to 64 px, size / 32 above."""
    return max(2, int(size) // 32)


def pair_score(gray, index_map, ring=None):
    """
    Give the score of one pair: mask_contrast of its defect pixels minus the mean contrast of the same
    mask rolled by CHANCE_SHIFTS; None for a mask without a defect.

    :param gray: [H x W] gray levels (0..255); :param index_map: integer [H x W] class map.
    """
    mask = np.asarray(index_map) > 0
    if not mask.any():
        return None
    gray = np.asarray(gray, dtype=np.float64)
    ring = default_ring(max(mask.shape)) if ring is None else int(ring)
    h, w = mask.shape
    chance = [
        mask_contrast(gray, np.roll(mask, (round(h * fy), round(w * fx)), axis=(0, 1)), ring)
        for fy, fx in CHANCE_SHIFTS
    ]
    return round(mask_contrast(gray, mask, ring) - float(np.mean(chance)), 4)


def to_gray(rgb):
    """Give the [H x W] float gray levels of a uint8 [H x W x 3] image (ITU-R 601 luma, as PIL's "L")."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def score_of(rgb, index_map):
    """Give :func:`pair_score` of a uint8 [H x W x 3] image and its [H x W] class map."""
    return pair_score(to_gray(rgb), index_map)


def sample_scores(sample_dir, indices):
    """Give [score of sample i for i in indices] of a sample folder's written pairs (None: no defect)."""
    scores = []
    for i in indices:
        paths = sample_files(sample_dir, i)
        rgb = np.asarray(read_png(paths["images"]).convert("RGB"))
        scores.append(score_of(rgb, np.asarray(read_png(paths["masks"]))))
    return scores
