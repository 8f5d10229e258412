"""Inpainting at a good image's own size: the canvas helpers, the seam correction and the pair score."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image
from test_conditioning import RES, argv, ckpts, snapshot, subprocess_env  # noqa: F401 (ckpts: a fixture)

from defect_gen.commands.cli import run_cli
from defect_gen.gaussian_diffusion import GaussianDiffusion
from defect_gen.sampling import conditioning
from defect_gen.sampling.canvas import (
    DownscaledModel,
    crop,
    equivalent_timestep,
    pad_to_multiple,
)
from defect_gen.sampling.checks import mask_contrast
from defect_gen.sampling.score import pair_score, score_of
from defect_gen.sampling.seam import (
    add_good_texture,
    disk_dilate,
    fine_detail,
    harmonize,
    seam_step,
)


def _region(n=2, size=48):
    region = torch.zeros(n, size, size, dtype=torch.bool)
    region[:, 8:30, 12:40] = True
    region[-1, 36:44, 0:6] = True  # touches the image border
    return region


def test_harmonize_keeps_a_seamless_image_and_removes_a_constant_step():
    gen = torch.Generator().manual_seed(0)
    good = torch.rand(2, 3, 48, 48, generator=gen)
    region = _region()
    assert torch.equal(harmonize(good, good, region), good)
    lighter = good + 0.3 * region[:, None]
    assert torch.allclose(harmonize(lighter, good, region), good, atol=1e-5)


def test_harmonize_changes_nothing_outside_and_keeps_the_band_texture():
    gen = torch.Generator().manual_seed(1)
    good = torch.rand(2, 3, 48, 48, generator=gen)
    drawn = torch.rand(2, 3, 48, 48, generator=gen) + 0.5  # a lighter patch with its own texture
    region = _region()
    out = harmonize(drawn, good, region)
    outside = ~region[:, None].expand_as(good)
    assert torch.equal(out[outside], good[outside])
    # the offset is smooth: the band's own neighbour steps survive almost unchanged
    inner = region[:, None, 1:, :] & region[:, None, :-1, :]
    steps_in = (drawn[:, :, 1:] - drawn[:, :, :-1])[inner.expand(-1, 3, -1, -1)]
    steps_out = (out[:, :, 1:] - out[:, :, :-1])[inner.expand(-1, 3, -1, -1)]
    assert (steps_out - steps_in).abs().mean() < 0.1 * steps_in.abs().mean()
    # and the seam falls to the good image's own level
    before, after = seam_step(drawn, good, region), seam_step(out, good, region)
    natural = seam_step(good, good, region)
    assert (after < before).all() and (after < 1.2 * natural).all()


def test_add_good_texture_adds_the_grain_inside_the_band_only():
    rng = np.random.default_rng(1)
    good = rng.integers(90, 160, size=(40, 48, 3)).astype(np.uint8)
    band = _region(1, 48)[0, :40].numpy()
    drawn = good.copy()
    drawn[band] = 120  # a band drawn flat, the rest the good image (as inpainting writes it)
    out = add_good_texture(drawn, good, band)
    assert np.array_equal(out[~band], good[~band])
    # far from the clip limits, so the band gains exactly the rounded grain of the good image
    assert np.array_equal(out[band].astype(int) - 120, np.rint(fine_detail(good)[band]).astype(int))
    assert np.abs(fine_detail(good)).mean() > 5  # the grain is there to add
    flat = np.full_like(good, 77)
    assert np.array_equal(add_good_texture(drawn, flat, band), drawn)  # a flat surface has no grain
    assert np.array_equal(add_good_texture(drawn, good, np.zeros_like(band)), drawn)
    with pytest.raises(ValueError, match="differ in size"):
        add_good_texture(drawn, good[:-1], band)


def test_seam_step_counts_only_border_pairs():
    good = torch.zeros(1, 1, 8, 8)
    region = torch.zeros(1, 8, 8, dtype=torch.bool)
    region[0, 2:4, 2:4] = True
    image = good.clone()
    image[0, 0, 2:4, 2:4] = 4.0
    assert seam_step(image, good, region).tolist() == [4.0]
    image[0, 0, 2:4, 2:4] = 0.0
    image[0, 0, 6, 6] = 9.0  # outside the region: not a seam
    assert seam_step(image, good, region).tolist() == [0.0]


def test_disk_dilate_is_round_and_contains_the_region():
    region = torch.zeros(1, 21, 21, dtype=torch.bool)
    region[0, 10, 10] = True
    grown = disk_dilate(region, 6)[0]
    yy, xx = np.mgrid[:21, :21]
    dist = np.hypot(yy - 10, xx - 10)
    assert grown[torch.from_numpy(dist <= 6)].all()
    assert not grown[torch.from_numpy(dist > 7)].any()
    assert not grown[0, 0] and not grown[4, 4]  # the square's corners are not in a disk band
    assert torch.equal(disk_dilate(region, 0), region)


def test_pad_and_crop_round_trip():
    x = torch.arange(2 * 3 * 10 * 13, dtype=torch.float32).reshape(2, 3, 10, 13)
    padded, size = pad_to_multiple(x, 4)
    assert padded.shape[-2:] == (12, 16) and size == (10, 13)
    assert torch.equal(crop(padded, size), x)
    same, _ = pad_to_multiple(x[..., :8, :12], 4)
    assert same.shape[-2:] == (8, 12)


def test_equivalent_timestep_matches_the_noise_level_of_an_average():
    diffusion = GaussianDiffusion()
    assert equivalent_timestep(diffusion, 500, 1.0) == 500
    t = equivalent_timestep(diffusion, 700, 4.0)
    a, a2 = diffusion.alpha_bar(700), diffusion.alpha_bar(t)
    assert t < 700
    assert abs(np.log((1 - a2) / a2) - np.log((1 - a) / (4 * a))) < 0.05


class _Fixed(torch.nn.Module):
    """A stand-in 8 x 8 model: records its inputs, predicts a fixed x0 [C x 8 x 8]."""

    def __init__(self, x0):
        super().__init__()
        self.x0, self.calls = x0, []

    def forward(self, x, t):
        self.calls.append((tuple(x.shape), int(t[0])))
        return self.x0.expand(x.shape[0], -1, -1, -1).clone()


@pytest.mark.parametrize("parameterization", ["x0", "eps"])
def test_downscaled_model_runs_the_model_at_its_size_and_upsamples_x0(parameterization):
    diffusion = GaussianDiffusion(parameterization=parameterization)
    x0 = torch.full((6, 8, 8), 0.25)
    inner = _Fixed(x0 if parameterization == "x0" else torch.zeros(6, 8, 8))
    model = DownscaledModel(inner, diffusion, 8)
    x = torch.randn(2, 6, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 600, dtype=torch.long)
    out = model(x, t)
    assert out.shape == x.shape
    assert inner.calls[-1][0] == (2, 6, 8, 8) and inner.calls[-1][1] < 600
    if parameterization == "x0":
        assert torch.allclose(out, torch.full_like(out, 0.25))
    else:  # the eps the full-size model would give for the upsampled x0 at (x, 600)
        x0_full, _ = diffusion.predict_x0_and_eps(out, x, 600)
        assert x0_full.shape == x.shape
    inner.calls.clear()
    same = torch.randn(2, 6, 8, 8)
    model(same, t)
    assert inner.calls == [((2, 6, 8, 8), 600)]  # at the model's own size: called as it is


def test_pair_score_high_on_a_visible_defect_and_low_on_an_invisible_one():
    rng = np.random.default_rng(0)
    gray = 120 + rng.normal(0, 3, (64, 64))
    index_map = np.zeros((64, 64), np.uint8)
    index_map[20:28, 30:38] = 2
    shown = gray.copy()
    shown[20:28, 30:38] -= 60  # a dark blowhole where the mask is
    assert pair_score(shown, index_map) > 40
    assert abs(pair_score(gray, index_map)) < 5
    assert pair_score(gray, np.zeros((64, 64), np.uint8)) is None
    assert mask_contrast(shown, index_map > 0) > 50


# ------------------------------------------------------------------------------------------------
# scripts/sample.py --mode inpaint on good images larger than the models (16 px tiny models here)

SAMPLE = load_script("sample")
REPO = Path(__file__).resolve().parents[1]


def _goods(folder, sizes, seed=0):
    """Write textured good images of the given (height, width) sizes; give the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[:h, :w]
        gray = 110 + 30 * np.sin(xx / 5.0) + rng.normal(0, 6, (h, w))
        Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).convert("RGB").save(
            folder / f"{n:03d}.png"
        )
    return folder


def _read(path):
    return np.asarray(Image.open(path))


def _check_outside_band(out, num):
    """Every pixel outside each sample's band equals its good image; give the manifest."""
    m = json.loads((out / "manifest.json").read_text())
    for i in range(num):
        rec = m["samples"][i]
        image, mask = _read(out / "images" / f"{i:06d}.png"), _read(out / "masks" / f"{i:06d}.png")
        good = np.asarray(Image.open(rec["good"]["path"]).convert("RGB"))
        assert image.shape == good.shape and mask.shape == good.shape[:2]
        assert mask.any()
        band = conditioning.default_band(min(mask.shape))
        inside = disk_dilate(torch.from_numpy(mask > 0)[None], band)[0].numpy()
        assert np.array_equal(image[~inside], good[~inside])
        assert (image[inside] != good[inside]).any()
    return m


@pytest.mark.parametrize("large_at_size", ["skip", "downscale"])
def test_inpaint_writes_pairs_at_the_good_images_own_size(ckpts, tmp_path, large_at_size):
    goods = _goods(tmp_path / "good", [(4 * RES, 4 * RES), (8 * RES, 8 * RES), (3 * RES, 5 * RES + 3)])
    out = tmp_path / "out"
    run_cli(SAMPLE.main, argv(
        ckpts, out, "--mode", "inpaint", "--good_dir", str(goods), "--num_samples", "6",
        "--large_at_size", large_at_size,
    ))  # fmt: skip
    m = _check_outside_band(out, 6)
    gen = m["generation"]
    assert gen["size"] == "native" and gen["large_at_size"] == large_at_size
    assert sorted(map(tuple, gen["canvas_sizes"])) == [(48, 83), (64, 64), (128, 128)]
    assert {_read(out / "images" / f"{i:06d}.png").shape[:2] for i in range(6)} > {(64, 64)}
    steps = m["steps"]
    assert (steps["large"]["count"] == 0) == (large_at_size == "skip")
    # the scores: one per sample, as the score function gives them from the written files
    for i, score in enumerate(m["scores"]):
        image, mask = _read(out / "images" / f"{i:06d}.png"), _read(out / "masks" / f"{i:06d}.png")
        assert score == score_of(image, mask)


def test_inpaint_size_resizes_every_good_image_and_masks_must_fit(ckpts, tmp_path):
    goods = _goods(tmp_path / "good", [(3 * RES, 5 * RES), (4 * RES, 2 * RES)])
    out = tmp_path / "out"
    run_cli(SAMPLE.main, argv(
        ckpts, out, "--mode", "inpaint", "--good_dir", str(goods), "--num_samples", "3",
        "--size", str(4 * RES),
    ))  # fmt: skip
    m = json.loads((out / "manifest.json").read_text())
    assert m["generation"]["canvas_sizes"] == [[4 * RES, 4 * RES]]
    for i in range(3):
        assert _read(out / "images" / f"{i:06d}.png").shape[:2] == (4 * RES, 4 * RES)
        assert m["samples"][i]["good"]["resized"]


def test_harmonize_removes_the_band_step(ckpts, tmp_path):
    goods = _goods(tmp_path / "good", [(4 * RES, 4 * RES)])
    steps = {}
    for flag in ("true", "false"):
        out = tmp_path / flag
        run_cli(SAMPLE.main, argv(
            ckpts, out, "--mode", "inpaint", "--good_dir", str(goods), "--num_samples", "4",
            "--harmonize", flag,
        ))  # fmt: skip
        found = []
        for i in range(4):
            image = torch.from_numpy(np.array(_read(out / "images" / f"{i:06d}.png"))).permute(2, 0, 1)
            good = torch.from_numpy(np.array(Image.open(goods / "000.png").convert("RGB")))
            mask = torch.from_numpy(_read(out / "masks" / f"{i:06d}.png") > 0)[None]
            band = disk_dilate(mask, conditioning.default_band(4 * RES))
            found.append(seam_step(image[None], good.permute(2, 0, 1)[None], band))
        steps[flag] = torch.cat(found)
        _check_outside_band(out, 4)
    natural = 6 * 2  # the texture's own steps are a few gray levels; a raw band's far more
    assert (steps["true"] < steps["false"]).all() and steps["true"].mean() < natural


def test_good_texture_matches_the_copy_made_from_a_folder_sampled_without_it(ckpts, tmp_path):
    # one good image at the models' size, one larger: both ways of sampling (see generate.py)
    goods = _goods(tmp_path / "good", [(RES, RES), (2 * RES, 2 * RES)])
    outs = {}
    for flag in ("true", "false"):
        outs[flag] = tmp_path / flag
        run_cli(SAMPLE.main, argv(
            ckpts, outs[flag], "--mode", "inpaint", "--good_dir", str(goods), "--num_samples", "4",
            "--good_texture", flag,
        ))  # fmt: skip
    with_it = _check_outside_band(outs["true"], 4)
    assert with_it["generation"]["good_texture"] is True
    assert "good_texture" not in json.loads((outs["false"] / "manifest.json").read_text())["generation"]
    copy = load_script("add_good_texture", "benchmarks")
    before = snapshot(outs["false"])
    assert copy.textured_copy(outs["false"], tmp_path / "copy") == 4
    assert snapshot(outs["false"]) == before  # the source is only read
    assert snapshot(tmp_path / "copy" / "images") == snapshot(outs["true"] / "images")
    assert snapshot(tmp_path / "copy" / "masks") == snapshot(outs["true"] / "masks")
    copied = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    assert copied["scores"] == with_it["scores"]
    assert copied["generation"] == with_it["generation"]
    for i in range(4):  # the option changes every pair's band
        name = f"images/{i:06d}.png"
        assert not np.array_equal(_read(outs["true"] / name), _read(outs["false"] / name))


def test_min_score_keeps_only_candidates_that_reach_it(ckpts, tmp_path):
    goods = _goods(tmp_path / "good", [(2 * RES, 2 * RES)])
    common = ("--mode", "inpaint", "--good_dir", str(goods), "--keep", "defect")
    out = tmp_path / "all"
    run_cli(SAMPLE.main, argv(ckpts, out, *common, "--num_samples", "6"))
    scores = json.loads((out / "manifest.json").read_text())["scores"]
    threshold = sorted(scores)[2]  # about half the candidates reach it
    kept = tmp_path / "kept"
    run_cli(SAMPLE.main, argv(
        ckpts, kept, *common, "--num_samples", "3", "--min_score", str(threshold),
    ))  # fmt: skip
    m = json.loads((kept / "manifest.json").read_text())
    assert len(m["scores"]) == 3 and min(m["scores"]) >= threshold
    assert m["generation"]["min_score"] == threshold
    skipped = m["selection"]["skipped_seeds"]
    assert all(scores[s] < threshold for s in skipped if s < 6)


def test_inpaint_at_size_identical_under_two_processes(ckpts, tmp_path):
    goods = _goods(tmp_path / "good", [(4 * RES, 4 * RES), (3 * RES, 5 * RES)])
    outs = {}
    for g in (1, 2):
        outs[g] = tmp_path / f"n{g}"
        cmd = ["mpirun", "-n", str(g), sys.executable, str(REPO / "scripts/sample.py")]
        proc = subprocess.run(
            [*cmd, *argv(ckpts, outs[g], "--mode", "inpaint", "--good_dir", str(goods),
                         "--num_samples", "4", "--large_at_size", "downscale", "--batch_size", "1")],
            env=subprocess_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
    for sub in ("images", "masks"):
        assert snapshot(outs[1] / sub) == snapshot(outs[2] / sub)
