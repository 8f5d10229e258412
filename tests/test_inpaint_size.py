"""Inpainting at a good image's own size: the canvas helpers, the seam correction and the pair score."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_error, load_script, run_error
from PIL import Image
from test_conditioning import (  # noqa: F401 (ckpts: a fixture)
    RES,
    TRAIN,
    argv,
    ckpts,
    snapshot,
    subprocess_env,
)

from defect_gen.commands.cli import run_cli
from defect_gen.data.toy import write_dataset
from defect_gen.evaluation.guard import ValidationIdentity, check_synthetic_set
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


# ------------------------------------------------------------------------------------------------
# The small model alone (no --large_recep): it takes every step of every inpainted pair

SMALL_RES = 32  # the small model of `small32` is trained at 32 px, the pair of `ckpts` at RES = 16


def small_argv(small, out, *extra):
    """Give argv(...) without --large_recep and --step_inference: the same run, small model alone."""
    full = argv({"large": "", "small": small}, out, *extra)
    drop = {full.index(flag) + d for flag in ("--large_recep", "--step_inference") for d in (0, 1)}
    return [a for i, a in enumerate(full) if i not in drop]


@pytest.fixture(scope="module")
def small32(tmp_path_factory):
    """A tiny small model (4 classes) trained 2 steps at 32 px on a toy MVTec-layout set."""
    root = tmp_path_factory.mktemp("small32")
    write_dataset(root / "data", layout="mvtec", num_per_type=2, size=SMALL_RES, seed=0)
    TRAIN.main([
        "--config", str(REPO / "configs/tiny_small.yaml"), "--work_dir", str(root / "small"),
        "--data_dir", str(root / "data"), "train.iterations=2", "train.max_images=0",
        f"data.params.resolution={SMALL_RES}", "data.params.num_image_train=2", "data.bs_per_gpu=2",
    ])  # fmt: skip
    return str(root / "small" / "checkpoints" / "ckpt_000002.pt")


SMALL_GOODS = [(4 * RES, 4 * RES), (3 * RES, 5 * RES + 3)]  # larger than the 16 px pair of `ckpts`


@pytest.fixture(scope="module")
def small_only(ckpts, tmp_path_factory):
    """A folder inpainted by the 16 px small model of `ckpts` alone, and its extra flags."""
    root = tmp_path_factory.mktemp("small_only")
    goods = _goods(root / "good", SMALL_GOODS)
    extra = ("--mode", "inpaint", "--good_dir", str(goods), "--num_samples", "4")
    run_cli(SAMPLE.main, small_argv(ckpts["small"], root / "out", *extra))
    return root / "out", extra


def test_small_model_alone_inpaints_every_canvas_with_every_step(small32, ckpts, tmp_path):
    # one canvas larger than the model's 32 px, one equal to it: both without a large model
    goods = _goods(tmp_path / "good", [(4 * SMALL_RES, 4 * SMALL_RES), (SMALL_RES, SMALL_RES)])
    out, calls = tmp_path / "out", tmp_path / "calls.jsonl"
    run_cli(SAMPLE.main, small_argv(
        small32, out, "--mode", "inpaint", "--good_dir", str(goods), "--num_samples", "6",
        "--batch_size", "1", "--call_log", str(calls),
    ))  # fmt: skip
    m = _check_outside_band(out, 6)
    sizes = {_read(out / "images" / f"{i:06d}.png").shape[:2] for i in range(6)}
    assert sizes == {(128, 128), (SMALL_RES, SMALL_RES)}
    gen = m["generation"]
    assert gen["large_recep"] is None and gen["small_recep"]["path"] == small32
    assert gen["step_inference"] == gen["num_timesteps"] == 1000
    assert gen["resolution"] == SMALL_RES  # the small model's training resolution
    assert m["steps"]["large"]["count"] == 0 and m["steps"]["small"]["count"] == 10
    assert set(m["training_data_stats"]) == {"small"}
    # every sample (batch of 1), on either canvas, took each timestep once with the small model
    log = [json.loads(line) for line in calls.read_text().splitlines()]
    assert {c["model"] for c in log} == {"small"}
    for b in range(6):
        assert [c["t"] for c in log if c["batch"] == b] == m["steps"]["small"]["timesteps"]
    # the evaluation's leakage guard reads the manifest's checkpoints: the small one only
    identity = ValidationIdentity(ckpts["data"], [], num_defect=len(m["classes"]))
    real = type("Real", (), {"classes": m["classes"], "num_defect": len(m["classes"])})
    found = check_synthetic_set(out, m, real=real, identity=identity, num_train_per_type=2)
    assert found["problems"] == [] and [g["role"] for g in found["generators"]] == ["small_recep"]


def test_small_model_alone_equals_the_pair_that_skips_the_large_model(ckpts, small_only, tmp_path):
    alone, extra = small_only
    out, calls = tmp_path / "pair", tmp_path / "calls.jsonl"
    run_cli(SAMPLE.main, argv(ckpts, out, *extra, "--call_log", str(calls)))
    assert {json.loads(line)["model"] for line in calls.read_text().splitlines()} == {"small"}
    for sub in ("images", "masks", "masks_rgb"):
        assert snapshot(alone / sub) == snapshot(out / sub)
    m_alone, m_pair = (json.loads((f / "manifest.json").read_text()) for f in (alone, out))
    assert m_alone["samples"] == m_pair["samples"] and m_alone["steps"] == m_pair["steps"]
    g_alone, g_pair = m_alone["generation"], m_pair["generation"]
    assert {k for k in g_pair if g_pair[k] != g_alone[k]} == {"large_recep", "step_inference"}


def test_flags_the_small_model_alone_cannot_use_are_refused(
    ckpts, small32, small_only, tmp_path, capsys
):
    out = tmp_path / "kept"
    shutil.copytree(small_only[0], out)
    before = snapshot(out)
    inpaint = small_only[1]
    tiny = _goods(tmp_path / "tiny", [(RES, RES)])
    with_large = argv(ckpts, out, *inpaint)
    no_switch = with_large[:4] + with_large[6:]
    assert "--step_inference" not in no_switch and "--large_recep" in no_switch
    cases = [
        (small_argv(ckpts["small"], out), ["--large_recep is needed in --mode joint"]),
        (
            small_argv(ckpts["small"], out, "--mode", "mask", "--mask_source", "train"),
            ["--large_recep is needed in --mode mask", "only --mode inpaint"],
        ),
        (
            small_argv(ckpts["small"], out, *inpaint, "--mask_source", "joint"),
            ["--large_recep is needed with --mask_source joint"],
        ),
        (
            small_argv(ckpts["small"], out, *inpaint, "--step_inference", "400"),
            ["--step_inference has no effect without --large_recep"],
        ),
        (
            small_argv(ckpts["small"], out, *inpaint, "--large_at_size", "downscale"),
            ["--large_at_size downscale", "--large_recep"],
        ),
        (
            small_argv(ckpts["small"], out, *inpaint, "--large_recep_config", "large.yml"),
            ["--large_recep_config has no effect without --large_recep"],
        ),
        (no_switch, ["--step_inference is needed with --large_recep"]),
        # the models' size is the small model's: a good image below its 32 px is refused
        (
            small_argv(small32, out, *inpaint[:2], "--good_dir", str(tiny)),
            [str(tiny / "000.png"), f"smaller than the models' {SMALL_RES}x{SMALL_RES}"],
        ),
    ]
    for args, needles in cases:
        code, err = run_error(SAMPLE.main, args, capsys)
        assert_one_error(code, err, needles)
        assert snapshot(out) == before


def test_small_model_alone_resumes_and_refuses_a_run_with_the_large_model(
    ckpts, small_only, tmp_path, capsys
):
    out = tmp_path / "resume"
    shutil.copytree(small_only[0], out)
    before = snapshot(out)
    for sub in ("images", "masks", "masks_rgb"):
        (out / sub / "000001.png").unlink()
    run_cli(SAMPLE.main, small_argv(ckpts["small"], out, *small_only[1]))
    m = json.loads((out / "manifest.json").read_text())
    assert m["last_run"]["generated"] == [1] and m["last_run"]["skipped"] == 3
    after = snapshot(out)
    for name, data in before.items():
        if name.parts[0] in ("images", "masks", "masks_rgb"):
            assert after[name] == data, name
    code, err = run_error(SAMPLE.main, argv(ckpts, out, *small_only[1]), capsys)
    assert_one_error(code, err, [
        "other parameters", "large_recep null there vs", "step_inference 1000 there vs 400 now",
    ])  # fmt: skip
    assert snapshot(out) == after
