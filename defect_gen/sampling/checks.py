"""
Checks of generated pairs: does each mask hold a defect, and does it sit on what its image shows?
"""

import json
from pathlib import Path

import numpy as np
import torch

from ..fileio import read_png
from .folder import sample_files


def ring_around(mask, ring=2):
    """Give the bool [H x W] pixels within `ring` pixels (a square) of a bool mask, outside it."""
    blob = torch.from_numpy(mask.astype(np.float32))[None, None]
    grown = torch.nn.functional.max_pool2d(blob, 2 * ring + 1, 1, ring)[0, 0].numpy() > 0
    return grown & ~mask


def mask_contrast(gray, mask, ring=2):
    """
    Give |mean of gray inside mask - mean of gray in a `ring`-pixel band around it| (0 for an empty mask).

    A mask lying on a visible defect has a high contrast; the same mask moved off it has a low one.
    """
    if not mask.any():
        return 0.0
    band = ring_around(mask, ring)
    if not band.any():
        return 0.0
    return float(abs(gray[mask].mean() - gray[band].mean()))


def check_samples(sample_dir):
    """
    Give a summary of generated pairs: does each mask hold a defect, and does it sit on what the image shows?

    Keys: count, with_defect (masks with any class > 0), mean_area (defect share of the pixels), contrast
    (mean mask_contrast of the masks with a defect, gray levels), shifted_contrast (the same masks rolled
    by a third of the image, off the defects they were generated with: the chance level).
    """
    manifest = json.loads((Path(sample_dir) / "manifest.json").read_text())
    rows = []
    for index in range(manifest["num_samples"]):
        paths = sample_files(sample_dir, index)
        mask = np.asarray(read_png(paths["masks"])) > 0
        gray = np.asarray(read_png(paths["images"]).convert("L"), dtype=np.float64)
        shift = (mask.shape[0] // 3, mask.shape[1] // 3)
        shifted = np.roll(mask, shift, axis=(0, 1))
        rows.append(
            (mask.any(), mask.mean(), mask_contrast(gray, mask), mask_contrast(gray, shifted))
        )
    with_defect = [row for row in rows if row[0]]
    return {
        "count": len(rows),
        "with_defect": len(with_defect),
        "mean_area": float(np.mean([row[1] for row in rows])) if rows else 0.0,
        "contrast": float(np.mean([row[2] for row in with_defect])) if with_defect else 0.0,
        "shifted_contrast": float(np.mean([row[3] for row in with_defect])) if with_defect else 0.0,
    }
