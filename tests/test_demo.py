"""The quick-start demo: its sample check, and the whole pipeline at a reduced scale."""

import json
import re
import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

from defect_gen.sampling.checks import check_samples, mask_contrast
from defect_gen.sampling.seam import disk_dilate as dilate

sys.path.insert(0, str(REPO / "scripts"))

import demo  # noqa: E402


def test_mask_contrast_hand_computed():
    gray = np.full((16, 16), 50.0)
    gray[4:8, 4:8] = 150.0  # a bright 4 x 4 defect
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    assert mask_contrast(gray, mask, ring=2) == 100.0
    # Moved off the defect onto flat background, the mask sees no contrast; an empty mask has none.
    assert mask_contrast(gray, np.roll(mask, 8, axis=1), ring=2) == 0.0
    assert mask_contrast(gray, np.zeros_like(mask)) == 0.0
    # Half on the defect: inside mean 100, border a mix of 150 and 50 pixels.
    half = np.roll(mask, 2, axis=1)
    inside = gray[half].mean()
    assert inside == 100.0
    assert 0.0 < mask_contrast(gray, half, ring=2) < 100.0


@pytest.mark.slow
def test_demo_reduced_generates_masks_on_defects(tmp_path, capsys):
    # The demo's own commands at a reduced scale: 40 training steps per model, 8 samples, 20 steps.
    out = tmp_path / "demo"
    demo.main(
        [
            "--out",
            str(out),
            "--iterations",
            "40",
            "--num_samples",
            "8",
            "--timestep_respacing",
            "20",
        ]
    )
    assert (out / "grid.png").is_file()
    # The small model is a patch model: the demo measures and prints its receptive field.
    printed = capsys.readouterr().out
    found = re.search(r"at (\d+) px: the small \(patch\) model sees (\d+) x (\d+) px, "
                      r"the large model (\d+) x (\d+) px", printed)  # fmt: skip
    assert found, printed
    size, small_h, small_w, large_h, large_w = map(int, found.groups())
    assert size == 32 and max(small_h, small_w) <= size // 2 + 1 and large_h == large_w == size

    masks = [np.asarray(Image.open(out / "samples" / "masks" / f"{i:06d}.png")) for i in range(8)]
    images = [np.asarray(Image.open(out / "samples" / "images" / f"{i:06d}.png")) for i in range(8)]
    assert all(m.shape == (32, 32) and i.shape == (32, 32, 3) for m, i in zip(masks, images))
    with_defect = [m for m in masks if (m > 0).any()]
    assert len(with_defect) >= 6, f"only {len(with_defect)} of 8 masks hold a defect"
    # Defects are small regions (the toy data's mean is about 6% of the pixels), not the noise an
    # untrained model gives (about 75% of the pixels).
    area = np.mean([(m > 0).mean() for m in masks])
    assert 0.002 < area < 0.3, area
    assert set(np.unique(np.concatenate([m.ravel() for m in masks]))) <= set(range(5))

    # The masks sit on what the images show: far more contrast at their border than the same masks
    # moved elsewhere.
    summary = check_samples(out / "samples")
    assert summary["count"] == 8 and summary["with_defect"] == len(with_defect)
    assert summary["contrast"] > 3 * summary["shifted_contrast"], summary

    # The row of defects inpainted onto toy good images: outside the band each is its good image.
    manifest = json.loads((out / "inpainted" / "manifest.json").read_text())
    band = manifest["generation"]["band"]
    assert (out / "inpainted_grid.png").is_file() and manifest["num_samples"] == demo.NUM_INPAINTED
    for i, record in enumerate(manifest["samples"]):
        mask = np.asarray(Image.open(out / "inpainted" / "masks" / f"{i:06d}.png"))
        image = np.asarray(Image.open(out / "inpainted" / "images" / f"{i:06d}.png"))
        good = np.asarray(Image.open(record["good"]["path"]))
        inside = dilate(torch.from_numpy(mask > 0)[None], band)[0].numpy()
        assert mask.any() and np.array_equal(image[~inside], good[~inside])
