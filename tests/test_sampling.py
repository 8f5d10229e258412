"""scripts/sample.py and scripts/switch_sweep.py: the sample-folder contract, seeds across ranks, resume,
clear errors, release checkpoints, and which model runs which timestep."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import assert_one_error, load_script, run_error
from PIL import Image

from defect_gen.commands.cli import run_cli
from defect_gen.data.stats import mask_statistics
from defect_gen.data.toy import write_dataset
from defect_gen.errors import SampleFolderError
from defect_gen.fileio import save_torch, write_png
from defect_gen.masks import overlay, palette
from defect_gen.patch_unet import PatchUNetModel
from defect_gen.respace import sampling_timesteps
from defect_gen.sampling import folder, generate, sweep
from defect_gen.training.config import load_config, resolve
from defect_gen.training.factory import build_diffusion, build_model
from defect_gen.two_stage import sample_two_stage
from defect_gen.unet import UNetModel

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
N, B, RES, K = 5, 2, 16, 4
TRAIN_STEPS = 100


SAMPLE, SWEEP, TRAIN = load_script("sample"), load_script("switch_sweep"), load_script("train")


def subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory):
    """
    Two tiny checkpoints (16 px, 4 defect classes) trained by scripts/train.py, once per session, for
    TRAIN_STEPS steps: long enough that their samples' masks are not constant (a few seconds).
    """
    root = tmp_path_factory.mktemp("sampling_ckpts")
    write_dataset(root / "data", layout="official", num_per_type=2, size=RES, seed=0)
    paths = {}
    for kind in ("large", "small"):
        TRAIN.main([
            "--config", str(REPO / f"configs/tiny_{kind}.yaml"), "--work_dir", str(root / kind),
            "--data_dir", str(root / "data"), f"train.iterations={TRAIN_STEPS}", "train.max_images=1",
            "train.preview_respacing=2", f"data.params.resolution={RES}", "data.params.num_image_train=2",
            "data.bs_per_gpu=4", "train.log_interval=50", "optimizer.params.lr=0.002",
        ])  # fmt: skip
        paths[kind] = str(root / kind / "checkpoints" / f"ckpt_{TRAIN_STEPS:06d}.pt")
        assert Path(paths[kind]).exists()
    return paths


def sample_argv(ckpts, out, *extra, n=N, b=B, switch=400, respacing="10"):
    return [
        "--large_recep", ckpts["large"], "--small_recep", ckpts["small"], "--step_inference", str(switch),
        "--sample_dir", str(out), "--num_samples", str(n), "--batch_size", str(b),
        "--timestep_respacing", respacing, "--device", "cpu", "--no_progress", *extra,
    ]  # fmt: skip


def snapshot(folder):
    return {
        p.relative_to(folder): p.read_bytes()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def read_folder(folder, sub):
    return [np.asarray(Image.open(p)) for p in sorted((Path(folder) / sub).glob("*.png"))]


class Launched:
    """Subprocesses started together in the background; tests collect their results."""

    def __init__(self, root):
        self.root = root
        self.procs = {}

    def start(self, name, cmd):
        self.procs[name] = subprocess.Popen(
            cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def result(self, name):
        """Give (exit code, stdout, stderr) of a launched command, waiting for it."""
        out, err = self.procs[name].communicate(timeout=180)
        return self.procs[name].returncode, out, err

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def launched(ckpts, tmp_path_factory):
    """Start the real-process runs (mpirun -n 1, -n 2, a failing run) while in-process tests go on."""
    runs = Launched(tmp_path_factory.mktemp("launched"))
    script = [sys.executable, str(REPO / "scripts/sample.py")]
    for g in (1, 2):
        runs.start(
            f"mpirun{g}",
            ["mpirun", "-n", str(g), *script, *sample_argv(ckpts, runs.root / f"g{g}")],
        )
    missing = {**ckpts, "large": str(runs.root / "missing.pt")}
    runs.start("missing", [*script, *sample_argv(missing, runs.root / "o")])
    yield runs
    runs.stop()


@pytest.fixture(scope="module")
def base(ckpts, launched, tmp_path_factory):
    """An in-process run of N samples (the real-process runs start first and go on meanwhile)."""
    out = tmp_path_factory.mktemp("sampling") / "base"
    run_cli(SAMPLE.main, sample_argv(ckpts, out))
    return out


# ------------------------------------------------------------------------------------------------


def test_sample_folder_contract(base, ckpts):
    for sub in folder.SUBDIRS:
        assert sorted(p.name for p in (base / sub).iterdir()) == [f"{i:06d}.png" for i in range(N)]
    for i in range(N):
        image = Image.open(base / "images" / f"{i:06d}.png")
        mask = Image.open(base / "masks" / f"{i:06d}.png")
        mask_rgb = Image.open(base / "masks_rgb" / f"{i:06d}.png")
        assert (image.mode, image.size) == ("RGB", (RES, RES))
        assert (mask.mode, mask.size) == ("L", (RES, RES))
        assert (mask_rgb.mode, mask_rgb.size) == ("RGB", (RES, RES))
        index = np.asarray(mask)
        assert index.max() <= K
        np.testing.assert_array_equal(np.asarray(mask_rgb), palette(K + 1)[index])
    # grid: (image, overlay) pairs, 4 pairs per row, tiles enlarged to >= 96 px, pad 2
    f = -(-folder.GRID_MIN_TILE // RES)
    tile = RES * f
    rows = -(-N // 4)
    grid = np.asarray(Image.open(base / "grid.png"))
    assert grid.shape == (rows * (tile + 2) + 2, min(2 * N, 8) * (tile + 2) + 2, 3)
    image0 = np.asarray(Image.open(base / "images/000000.png"))
    first = overlay(image0, np.asarray(Image.open(base / "masks/000000.png")), 0.5, K + 1)
    enlarge = lambda a: np.repeat(np.repeat(a, f, axis=0), f, axis=1)  # noqa: E731
    np.testing.assert_array_equal(grid[2 : 2 + tile, 2 : 2 + tile], enlarge(image0))
    np.testing.assert_array_equal(grid[2 : 2 + tile, tile + 4 : 2 * tile + 4], enlarge(first))

    m = json.loads((base / "manifest.json").read_text())
    g = m["generation"]
    assert (
        g["large_recep"]["path"] == os.path.abspath(ckpts["large"])
        and g["large_recep"]["step"] == TRAIN_STEPS
    )
    assert (
        g["small_recep"]["path"] == os.path.abspath(ckpts["small"])
        and g["small_recep"]["step"] == TRAIN_STEPS
    )
    assert (g["step_inference"], g["sampler"], g["timestep_respacing"], g["eta"], g["seed"]) == (
        400,
        "cold",
        "10",
        0.0,
        0,
    )
    assert (g["use_ema"], g["precision"], g["num_defect"], g["resolution"]) == (
        True,
        "fp32",
        K,
        RES,
    )
    assert m["status"] == "complete" and m["num_samples"] == N and m["version"]
    assert m["classes"] == ["class_1", "class_2", "class_3", "class_4"]
    assert m["steps"]["large"]["timesteps"] + m["steps"]["small"][
        "timesteps"
    ] == sampling_timesteps(1000, "10")
    assert m["steps"]["large"]["last"] >= 400 > m["steps"]["small"]["first"]
    assert m["last_run"] == {"generated": list(range(N)), "skipped": 0}
    assert m["timing"]["samples_generated"] == N and m["timing"]["generate_s"] > 0
    assert m["training_data_stats"]["large"]["num_images"] == 8
    # the generated statistics are those of the written masks
    masks = read_folder(base, "masks")
    share = [np.mean([(mk == k).any() for mk in masks]) for k in range(K + 1)]
    area = [np.mean([(mk == k).mean() for mk in masks]) for k in range(K + 1)]
    np.testing.assert_allclose(m["generated_mask_stats"]["share_with_class"], share)
    np.testing.assert_allclose(m["generated_mask_stats"]["mean_area"], area)
    present = [
        np.mean([(mk == k).mean() for mk in masks if (mk == k).any()] or [np.nan])
        for k in range(K + 1)
    ]
    got = [np.nan if v is None else v for v in m["generated_mask_stats"]["mean_area_present"]]
    np.testing.assert_allclose(got, present)
    assert m["generated_mask_stats"]["defect_free"] == np.mean([not (mk > 0).any() for mk in masks])
    assert m["generated_mask_stats"]["num_images"] == N


def test_summary_table_names_classes(capsys, ckpts, tmp_path):
    run_cli(SAMPLE.main, sample_argv(ckpts, tmp_path / "one", n=1, b=1, respacing="2"))
    out = capsys.readouterr().out
    assert "samples/s" in out
    for name in ("background", "class_1", "class_4", "generated (1)", "training (8)"):
        assert name in out


def test_summary_table_shows_missing_values_as_dashes():
    generated = mask_statistics([np.array([[0, 1], [1, 1]])], num_defect=2)
    table = folder.format_stats_table(["a", "b"], generated, mask_statistics([], num_defect=2))
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:]}
    assert rows["background"] == ["100.0%", "-", "25.0%", "-"]
    assert rows["a"] == ["100.0%", "-", "75.0%", "-"]
    assert rows["b"] == ["0.0%", "-", "0.0%", "-"]
    assert rows["(no"] == ["defect)", "0.0%", "-", "-", "-"]
    # training statistics of older checkpoints lack the newer keys
    old = {"num_images": 4, "share_with_class": [1.0, 0.5, 0.25], "mean_area": [0.9, 0.05, 0.05]}
    rows = {
        line.split()[0]: line.split()[1:]
        for line in folder.format_stats_table(["a", "b"], generated, old).splitlines()[2:]
    }
    assert rows["b"] == ["0.0%", "25.0%", "0.0%", "5.0%"]
    assert rows["(no"] == ["defect)", "0.0%", "-", "-", "-"]


def test_folder_statistics_name_a_mask_above_the_classes(tmp_path):
    write_png(folder.sample_files(tmp_path, 0)["masks"], np.full((4, 4), 3, dtype=np.uint8))
    with pytest.raises(SampleFolderError, match="000000.png: holds class 3"):
        folder.folder_mask_stats(tmp_path, [0], num_defect=2)


def test_mpirun_1_and_2_ranks_give_the_same_samples(base, launched, record_property):
    for g in (1, 2):
        code, _, err = launched.result(f"mpirun{g}")
        assert code == 0, f"mpirun -n {g}: {err[-2000:]}"
    one, two = launched.root / "g1", launched.root / "g2"
    m2 = json.loads((two / "manifest.json").read_text())
    assert m2["world_size"] == 2 and m2["last_run"]["generated"] == list(range(N))
    assert m2["generation"] == json.loads((one / "manifest.json").read_text())["generation"]
    # The comparison means something only if the masks vary: every mask holds background and a
    # defect (2-step models give some all-background masks), and the folder holds several classes.
    masks = read_folder(one, "masks")
    assert all(0 < (m > 0).mean() < 0.5 for m in masks), [float((m > 0).mean()) for m in masks]
    assert len(np.unique(np.concatenate([m.ravel() for m in masks]))) >= 3
    for sub in folder.SUBDIRS:
        a, b = read_folder(one, sub), read_folder(two, sub)
        assert len(a) == len(b) == N
        for x, y in zip(a, b):
            if sub == "images":
                assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
            else:
                np.testing.assert_array_equal(x, y)
    byte_identical = all(snapshot(one / sub) == snapshot(two / sub) for sub in ("images", "masks"))
    record_property("mpirun_1_vs_2_byte_identical", byte_identical)
    print(f"mpirun -n 1 vs -n 2: images/ and masks/ byte-identical: {byte_identical}")
    # rank 1 of 2 batches samples 1 and 3 together; sample i is still the in-process run's sample i
    assert snapshot(one / "masks") == snapshot(base / "masks")


def test_error_exit_from_a_real_process(launched):
    code, out, err = launched.result("missing")
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {launched.root / 'missing.pt'}: checkpoint file not found"
    ]
    assert not (launched.root / "o").exists()


def test_rerun_generates_exactly_the_missing_samples(base, ckpts, tmp_path):
    out = tmp_path / "resume"
    shutil.copytree(base, out)
    for sub in folder.SUBDIRS:
        for i in (1, 3):
            (out / sub / f"{i:06d}.png").unlink()
    damaged = out / "images" / "000004.png"
    damaged.write_bytes(
        damaged.read_bytes()[:40]
    )  # an interrupted write of another tool: not decodable
    kept = {
        p: p.stat().st_mtime_ns
        for i in (0, 2)
        for sub in folder.SUBDIRS
        for p in [out / sub / f"{i:06d}.png"]
    }
    run_cli(SAMPLE.main, sample_argv(ckpts, out))
    m = json.loads((out / "manifest.json").read_text())
    assert m["last_run"] == {"generated": [1, 3, 4], "skipped": 2}
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    before, after = snapshot(base), snapshot(out)
    for sub in folder.SUBDIRS:
        for i in range(N):
            name = Path(sub) / f"{i:06d}.png"
            assert after[name] == before[name], name


def _mismatched_small(tmp_path):
    """A small checkpoint in our format for 3 defect classes (7 channels)."""
    raw = yaml.safe_load((REPO / "configs/tiny_small.yaml").read_text())
    raw["model"]["params"].update(in_channels=7, out_channels=7)
    raw["data"]["params"].update(num_defect=3, resolution=RES)
    cfg = resolve(raw, "test")
    state = build_model(cfg).state_dict()
    path = tmp_path / "small_k3.pt"
    save_torch(
        {"model": state, "ema": state, "optimizer": {}, "step": 7, "config": cfg, "kind": "small"},
        path,
    )
    return str(path)


def test_bad_inputs_give_one_error_line_and_leave_samples_untouched(base, ckpts, tmp_path, capsys):
    out = tmp_path / "kept"
    shutil.copytree(base, out)
    before = snapshot(out)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(Path(ckpts["large"]).read_bytes()[:100000])
    missing = str(tmp_path / "nowhere.pt")
    k3 = _mismatched_small(tmp_path)
    cases = [
        ({"small": k3}, [], [ckpts["large"], k3, "num_defect 4 vs 3", "in/out channels 8 vs 7"]),
        ({"large": str(truncated)}, [], [str(truncated), "not a readable checkpoint"]),
        ({"small": missing}, [], [missing, "not found"]),
        ({}, ["--num_defect", "3"], ["--num_defect 3 needs 7", ckpts["large"]]),
        (
            {"large": ckpts["small"], "small": ckpts["large"]},
            [],
            [ckpts["small"], "small model", "--large_recep"],
        ),
        ({}, ["--seed", "1"], [str(out / "manifest.json"), "seed 0 there vs 1 now", "--overwrite"]),
    ]
    for swap, extra, needles in cases:
        code, err = run_error(SAMPLE.main, sample_argv({**ckpts, **swap}, out, *extra), capsys)
        assert_one_error(code, err, needles)
        assert snapshot(out) == before


def test_overwrite_replaces_a_folder_of_other_parameters(base, ckpts, tmp_path):
    out = tmp_path / "over"
    shutil.copytree(base, out)
    (out / "images" / "000009.png").write_bytes(
        (out / "images" / "000000.png").read_bytes()
    )  # an old extra
    run_cli(SAMPLE.main, sample_argv(ckpts, out, "--seed", "3", "--overwrite", n=2, b=2))
    m = json.loads((out / "manifest.json").read_text())
    assert m["generation"]["seed"] == 3 and m["last_run"]["generated"] == [0, 1]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png"]
    # seed 3 + 0 is a different noise than seed 0 + 0: the folder now holds the new samples only
    assert (out / "images" / "000000.png").read_bytes() != (
        base / "images" / "000000.png"
    ).read_bytes()
    # sample 1 of seed 3 is sample 4 of seed 0 (both seed 4): the same sample, up to batch numerics
    a = np.asarray(Image.open(out / "images/000001.png")).astype(int)
    assert np.abs(a - np.asarray(Image.open(base / "images/000004.png"))).max() <= 1


RELEASE_YAML = {
    "diffusion": {"target": "diffusion.base_diffusion.ColdDiffusion",
                  "params": {"parameterization": "x0", "schedule": "cosine", "num_timestep": 1000}},
    "data": {"bs_per_gpu": 2, "num_workers": 1,
             "params": {"dir": "/home/someone/cotton_fabric_mask", "resolution": RES, "num_image_train": 5}},
    "optimizer": {"params": {"lr": 0.0001, "weight_decay": 0.002}},
    "train": {"iterations": 160000, "log_image_interval": 10000, "save_ckpt_interval": 10000,
              "max_images": 8, "eval_interval": 10},
}  # fmt: skip
RELEASE_MODELS = {
    "large": {"target": "models.unet.openaiunet.UNetModel",
              "params": {"image_size": RES, "in_channels": 8, "out_channels": 8, "model_channels": 32,
                         "attention_downsample": [4], "num_res_blocks": 1, "num_head_channels": 16,
                         "channel_mult": [1, 1, 2]}},
    "small": {"target": "models.unet.unet_receptive.UNetModel",
              "params": {"image_size": RES, "in_channels": 8, "out_channels": 8, "model_channels": 32,
                         "attention_resolutions": 2, "num_res_blocks": 1, "num_head_channels": 16,
                         "channel_mult": [1, 2]}},
}  # fmt: skip


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Release-format checkpoints ({model, ema, optimizer}, "model" and "ema" different) and YAMLs."""
    root = tmp_path_factory.mktemp("release")
    out = {}
    for kind, cls in (("large", UNetModel), ("small", PatchUNetModel)):
        cfg = {**RELEASE_YAML, "model": RELEASE_MODELS[kind]}
        (root / f"{kind}_recep.yml").write_text(yaml.safe_dump(cfg))
        params = RELEASE_MODELS[kind]["params"]
        torch.manual_seed(1)
        raw = cls(**params).state_dict()
        torch.manual_seed(2)
        ema = {
            k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in raw.items()
        }
        torch.save({"model": raw, "ema": ema, "optimizer": {}}, root / f"{kind}.pt")
        out[kind] = str(root / f"{kind}.pt")
        out[f"{kind}_yaml"] = str(root / f"{kind}_recep.yml")
    return out


def test_release_checkpoints_sample_with_their_yaml_and_ema(release, tmp_path, capsys):
    args = [
        "--large_recep_config",
        release["large_yaml"],
        "--small_recep_config",
        release["small_yaml"],
    ]
    ck = {"large": release["large"], "small": release["small"]}
    run_cli(SAMPLE.main, sample_argv(ck, tmp_path / "ema", *args, n=2, b=2, respacing="5"))
    # oracle: the sampler called directly with the EMA weights and generators seeded 0 + i
    models = {}
    for kind in ("large", "small"):
        cfg = load_config(release[f"{kind}_yaml"])
        models[kind] = build_model(cfg).eval()
        models[kind].load_state_dict(torch.load(release[kind])["ema"], strict=True)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    x = sample_two_stage(build_diffusion(cfg), models["large"], models["small"], (2, 8, RES, RES), 400,
                         timestep_respacing="5", generator=gens)  # fmt: skip
    images, index = generate.to_arrays(x)
    for i in range(2):
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / f"ema/images/{i:06d}.png")), images[i]
        )
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / f"ema/masks/{i:06d}.png")), index[i]
        )
    m = json.loads((tmp_path / "ema/manifest.json").read_text())
    assert m["generation"]["large_recep"]["step"] is None and m["classes"] == [
        f"class_{k}" for k in range(1, 5)
    ]
    # the raw weights give other samples
    run_cli(
        SAMPLE.main,
        sample_argv(ck, tmp_path / "raw", *args, "--use_ema", "false", n=2, b=2, respacing="5"),
    )
    assert snapshot(tmp_path / "raw/images") != snapshot(tmp_path / "ema/images")
    # without its YAML a release checkpoint is refused with the flag to use
    code, err = run_error(SAMPLE.main, sample_argv(ck, tmp_path / "noyaml", n=1), capsys)
    assert (
        code == 2
        and err[-1].startswith(f"error: {release['large']}:")
        and "--large_recep_config" in err[-1]
    )
    # a YAML that does not describe the weights: refused naming both
    wrong = tmp_path / "wrong.yml"
    cfg = {**RELEASE_YAML, "model": json.loads(json.dumps(RELEASE_MODELS["large"]))}
    cfg["model"]["params"]["model_channels"] = 64
    wrong.write_text(yaml.safe_dump(cfg))
    code, err = run_error(SAMPLE.main, sample_argv(ck, tmp_path / "wrong", "--large_recep_config", str(wrong),
                                      "--small_recep_config", release["small_yaml"], n=1), capsys)  # fmt: skip
    assert (
        code == 2 and release["large"] in err[-1] and str(wrong) in err[-1] and "shape" in err[-1]
    )


def test_switch_400_respaced_50_call_log(ckpts, tmp_path):
    log = tmp_path / "calls.jsonl"
    run_cli(
        SAMPLE.main,
        sample_argv(ckpts, tmp_path / "s", "--call_log", str(log), n=1, b=1, respacing="50"),
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert {c["batch"] for c in calls} == {0} and {c["rank"] for c in calls} == {0}
    large = [c["t"] for c in calls if c["model"] == "large"]
    small = [c["t"] for c in calls if c["model"] == "small"]
    assert all(t >= 400 for t in large) and all(t < 400 for t in small)
    assert [c["t"] for c in calls] == large + small == sampling_timesteps(1000, "50")
    assert len(large) + len(small) == 50 and large and small
    steps = json.loads((tmp_path / "s/manifest.json").read_text())["steps"]
    assert steps["large"]["timesteps"] == large and steps["small"]["timesteps"] == small
    assert (steps["large"]["count"], steps["small"]["count"]) == (len(large), len(small))


def test_switch_sweep_png(ckpts, tmp_path):
    out = tmp_path / "sweep.png"
    run_cli(SWEEP.main, [
        "--large_recep", ckpts["large"], "--small_recep", ckpts["small"], "--out", str(out),
        "--steps", "0,400,1000", "--num_seeds", "2", "--timestep_respacing", "5", "--device", "cpu",
    ])  # fmt: skip
    figure = np.asarray(Image.open(out))
    cell = RES * 6  # 16 px enlarged by ceil(96 / 16)
    pad, top, left = sweep.SWEEP_PAD, sweep.SWEEP_TOP, sweep.SWEEP_LEFT
    assert figure.shape == (top + 2 * (cell + pad) + pad, left + 3 * (cell + pad) + pad, 3)
    for c in range(3):  # a label drawn above every column
        x0 = left + pad + c * (cell + pad)
        assert (figure[:top, x0 : x0 + cell] < 128).any()
    # cells are the samples seeded like sample.py's: seed 0 row, S = 400 column == sample.py's sample 0
    sample_dir = tmp_path / "s"
    run_cli(SAMPLE.main, sample_argv(ckpts, sample_dir, n=2, b=2, respacing="5"))
    tile = overlay(
        np.asarray(Image.open(sample_dir / "images/000000.png")),
        np.asarray(Image.open(sample_dir / "masks/000000.png")),
        0.5,
        K + 1,
    )
    x0, y0 = left + pad + (cell + pad), top + pad
    np.testing.assert_array_equal(figure[y0 : y0 + cell : 6, x0 : x0 + cell : 6], tile)


# ------------------------------------------------------------------------------------------------
# --class_weight_correction


def _weighted_checkpoint(path, tmp_path, weights, mask_mode="consistent"):
    """A copy of `path` that says it was trained with a class-weighted cross-entropy mask loss."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt["config"]["diffusion"]["params"]["mask_mode"] = mask_mode
    ckpt["config"]["train"]["seperate_channel_loss"] = True
    ckpt["mask_class_weights"] = weights
    out = tmp_path / f"weighted_{Path(path).parents[1].name}.pt"
    save_torch(ckpt, out)
    return str(out)


def test_class_weight_correction_subtracts_log_weights_from_the_mask_logits(ckpts, tmp_path):
    from defect_gen.sampling.pair import load_model

    weights = [1.0, 20.0, 4.0, 2.0, 8.0]
    path = _weighted_checkpoint(ckpts["large"], tmp_path, weights)
    corrected = load_model(path, "large", class_weight_correction=1.0)
    plain = load_model(path, "large", class_weight_correction=0)
    assert corrected.prior_correction == weights and plain.prior_correction is None
    x = torch.randn(2, 3 + K + 1, RES, RES, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 900])
    out, ref = corrected.model(x, t), plain.model(x, t)
    assert torch.equal(out[:, :3], ref[:, :3])
    expected = ref[:, 3:] - torch.log(torch.tensor(weights)).view(1, -1, 1, 1)
    assert torch.allclose(out[:, 3:], expected, atol=1e-6)
    # Nothing to correct: no weights, or outputs that are not cross-entropy logits.
    assert load_model(ckpts["large"], "large").prior_correction is None
    faithful = _weighted_checkpoint(ckpts["large"], tmp_path / "f", weights, "faithful")
    assert load_model(faithful, "large").prior_correction is None


def test_class_weight_correction_is_part_of_the_folder_parameters(ckpts, tmp_path, capsys):
    weights = [1.0, 20.0, 4.0, 2.0, 8.0]
    pair = {k: _weighted_checkpoint(ckpts[k], tmp_path, weights) for k in ("large", "small")}
    out = tmp_path / "s"
    run_cli(SAMPLE.main, sample_argv(pair, out, n=2))
    params = folder.read_manifest(out)["generation"]
    assert params["class_weight_correction"] == {
        "strength": 0.5,
        "large": weights,
        "small": weights,
    }
    before = snapshot(out)
    code, err = run_error(
        SAMPLE.main, sample_argv(pair, out, "--class_weight_correction", "1", n=2), capsys
    )
    assert code != 0 and len(err) == 1 and "class_weight_correction" in err[0], err
    assert snapshot(out) == before
    # Unweighted models keep the parameters they always had: old folders resume.
    plain = tmp_path / "plain"
    run_cli(SAMPLE.main, sample_argv(ckpts, plain, n=1))
    assert "class_weight_correction" not in folder.read_manifest(plain)["generation"]
    # ... and asking them for a correction is refused, not ignored.
    argv = sample_argv(ckpts, tmp_path / "refused", "--class_weight_correction", "0.5", n=1)
    code, err = run_error(SAMPLE.main, argv, capsys)
    assert code != 0 and len(err) == 1 and "has no effect" in err[0], err
    assert not (tmp_path / "refused" / "images").exists()
