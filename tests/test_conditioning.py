"""Defects where you want them: the conditioned sampler, --mode mask|inpaint, mask sources, --keep."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_error, load_script, run_error
from PIL import Image

from defect_gen.commands.cli import run_cli
from defect_gen.data.toy import write_dataset
from defect_gen.gaussian_diffusion import GaussianDiffusion
from defect_gen.sampling import conditioning, keep
from defect_gen.sampling.seam import disk_dilate
from defect_gen.two_stage import sample_two_stage

REPO = Path(__file__).resolve().parents[1]
RES, K = 16, 4


SAMPLE, TRAIN = load_script("sample"), load_script("train")


# ------------------------------------------------------------------------------------------------
# The sampler


class Conv(torch.nn.Module):
    """A stand-in model whose output depends on x and t (a fixed random 3x3 convolution)."""

    def __init__(self, channels=6, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.calls = []

    def forward(self, x, t):
        self.calls.append(int(t[0]))
        return torch.tanh(self.conv(x)) * (1 + t[:, None, None, None].float() / 1000)


def _sample(shape, seeds, sampler="ddpm", **kw):
    model = Conv(shape[1])
    x = sample_two_stage(
        GaussianDiffusion(), model, model, shape, 400, sampler=sampler, timestep_respacing="20",
        generator=[torch.Generator().manual_seed(s) for s in seeds], **kw,
    )  # fmt: skip
    return x, model.calls


def _known(shape, seeds):
    return [conditioning.known_generator(0, s) for s in seeds]


@pytest.mark.parametrize("sampler", ["cold", "ddim", "ddpm"])
def test_all_zero_known_weight_gives_the_unconditional_samples_bit_for_bit(sampler):
    shape, seeds = (2, 6, 8, 8), [3, 4]
    plain, _ = _sample(shape, seeds, sampler)
    known = torch.rand(shape) * 2 - 1
    cond, _ = _sample(
        shape, seeds, sampler, known=known, known_weight=torch.zeros(shape),
        known_generator=_known(shape, seeds),
    )  # fmt: skip
    assert torch.equal(plain, cond)


def test_known_part_is_exact_and_samples_stay_batch_independent():
    shape, seeds = (2, 6, 8, 8), [5, 6]
    known = torch.rand(shape) * 2 - 1
    weight = (torch.rand(shape) > 0.5).float()
    both, calls = _sample(
        shape, seeds, known=known, known_weight=weight, known_generator=_known(shape, seeds),
        resample=2,
    )  # fmt: skip
    assert torch.equal(both[weight == 1], known[weight == 1])
    assert (both[weight == 0] != known[weight == 0]).all()
    # every step but the last runs 1 + resample times
    assert len(calls) == 3 * 19 + 1 and calls[:3] == [calls[0]] * 3
    alone, _ = _sample(
        (1, *shape[1:]), seeds[1:], known=known[1:], known_weight=weight[1:],
        known_generator=_known(shape, seeds[1:]), resample=2,
    )  # fmt: skip
    torch.testing.assert_close(both[1:], alone, atol=1e-6, rtol=0)


def test_resample_needs_known_values():
    with pytest.raises(ValueError, match="resample"):
        _sample((1, 6, 8, 8), [0], resample=1)


# ------------------------------------------------------------------------------------------------
# Mask transforms, inpainting weights, quotas


def test_train_mask_transform_keeps_the_defect_inside_and_its_class():
    index_map = np.zeros((RES, RES), np.uint8)
    index_map[2:5, 10:16] = 3  # touches the border
    index_map[6, 6] = 1  # one pixel: must survive when asked for
    for j in range(40):
        rng = conditioning.stream_rng(0, j, conditioning.MASK_STREAM)
        out, rec = conditioning.transform_mask(index_map, rng, want=1)
        assert out.shape == index_map.shape and set(np.unique(out)) <= {0, 1, 3}
        assert (out == 1).any(), rec
        assert 0.75 <= rec["scale"] <= 1.25 and rec["rot90"] in range(4)
    # the same (seed + j) gives the same transform
    a = conditioning.transform_mask(index_map, conditioning.stream_rng(0, 7, 1))
    b = conditioning.transform_mask(index_map, conditioning.stream_rng(7, 0, 1))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_flip_transform_mirrors_the_mask_and_keeps_it_on_its_edge():
    index_map = np.zeros((RES, RES), np.uint8)
    index_map[3:7, 0:2] = 2  # a chip on the left edge
    mirrors = {
        (False, False): index_map,
        (True, False): index_map[:, ::-1],
        (False, True): index_map[::-1],
        (True, True): index_map[::-1, ::-1],
    }
    seen = set()
    for j in range(40):
        out, rec = conditioning.flip_mask(index_map, conditioning.stream_rng(0, j, 1))
        key = (rec["flip_lr"], rec["flip_ud"])
        assert np.array_equal(out, mirrors[key]), rec
        cols = np.nonzero(out.any(axis=0))[0]
        assert cols.min() == 0 or cols.max() == RES - 1  # still on a side edge, same shape and area
        assert (out == 2).sum() == 8
        seen.add(key)
    assert len(seen) == 4


def test_inpaint_weights_free_exactly_the_band_around_the_defect():
    plan = conditioning.Plan(mode="inpaint", mask_source="dir", num_defect=2, resolution=8, seed=0)
    index_map = np.zeros((8, 8), np.uint8)
    index_map[3, 4] = 2
    good = np.full((8, 8, 3), 200, np.uint8)
    plan.masks, plan.goods, plan.band = [("m.png", index_map)], [("g.png", good, [8, 8])], 1
    known, weight = plan.known([0])
    free = np.zeros((8, 8), bool)
    free[2:5, 3:6] = True
    assert torch.equal(weight[0, :3], torch.from_numpy(~free).float().expand(3, 8, 8))
    assert (weight[0, 3:] == 1).all()
    assert torch.equal(known[0, 3:].argmax(0), torch.from_numpy(index_map).long())
    assert torch.allclose(known[0, :3], torch.full((3, 8, 8), 200 / 127.5 - 1))


def test_default_quotas_follow_the_training_shares():
    assert keep.default_quotas(10, [0.5, 0.3, 0.2]) == [5, 3, 2]
    assert keep.default_quotas(4, [0.1, 0.1, 0.1]) == [2, 1, 1]
    assert sum(keep.default_quotas(7, [0.13, 0.41, 0.05, 0.4])) == 7


def test_selection_fills_quotas_in_candidate_order():
    classes = ["a", "b", "c"]
    sel = keep.Selection("balanced", 3, classes, {"a": 1, "b": 2, "c": 0}, seed=10)
    stream = [0, 1, 1, 3, 2, 2, 1, 2]
    out = [sel.offer(j, c) for j, c in enumerate(stream)]
    assert out == [None, 0, None, None, 1, 2, None, None] and sel.done
    rec = sel.record()
    assert [k["seed"] for k in rec["kept"]] == [11, 14, 15]
    assert rec["skipped_seeds"] == [10, 12, 13] and rec["next_seed"] == 16
    again = keep.Selection.restore(rec, "balanced", 3, classes, {"a": 1, "b": 2, "c": 0}, 10)
    assert again.kept == sel.kept and again.next == sel.next and again.done


# ------------------------------------------------------------------------------------------------
# scripts/sample.py


def subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    venv = Path(sys.executable).parent
    env["PATH"] = f"{venv}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Two tiny checkpoints (16 px, 4 classes) trained 2 steps on a toy MVTec-layout set with train/good."""
    root = tmp_path_factory.mktemp("cond_ckpts")
    write_dataset(root / "data", layout="mvtec", num_per_type=2, size=RES, seed=0)
    paths = {"data": root / "data"}
    for kind in ("large", "small"):
        TRAIN.main([
            "--config", str(REPO / f"configs/tiny_{kind}.yaml"), "--work_dir", str(root / kind),
            "--data_dir", str(root / "data"), "train.iterations=2", "train.max_images=0",
            f"data.params.resolution={RES}", "data.params.num_image_train=2", "data.bs_per_gpu=2",
        ])  # fmt: skip
        paths[kind] = str(root / kind / "checkpoints" / "ckpt_000002.pt")
    return paths


def argv(ckpts, out, *extra):
    return [
        "--large_recep", ckpts["large"], "--small_recep", ckpts["small"], "--step_inference", "400",
        "--sample_dir", str(out), "--batch_size", "2", "--timestep_respacing", "10", "--device", "cpu",
        "--no_progress", *extra,
    ]  # fmt: skip


INPAINT = ("--mode", "inpaint", "--mask_source", "train", "--num_samples", "5")
BALANCED = (
    "--mode",
    "mask",
    "--mask_source",
    "train",
    "--keep",
    "balanced",
    "--quota",
    "crack=2,stain=1",
)


@pytest.fixture(scope="module")
def launched(ckpts, tmp_path_factory):
    """mpirun -n 1 and -n 2 of the inpaint and --keep balanced runs, started in the background."""
    root = tmp_path_factory.mktemp("cond_launched")
    procs = {}
    for name, extra in (("inpaint", INPAINT), ("balanced", BALANCED)):
        for g in (1, 2):
            cmd = ["mpirun", "-n", str(g), sys.executable, str(REPO / "scripts/sample.py")]
            procs[name, g] = subprocess.Popen(
                [*cmd, *argv(ckpts, root / f"{name}{g}", *extra)], env=subprocess_env(),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
    yield root, procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def snapshot(folder):
    return {
        p.relative_to(folder): p.read_bytes()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def read(path):
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def inpainted(ckpts, launched, tmp_path_factory):
    out = tmp_path_factory.mktemp("cond") / "inpaint"
    run_cli(SAMPLE.main, argv(ckpts, out, *INPAINT))
    return out


def test_mask_mode_output_masks_equal_the_inputs(ckpts, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    rng = np.random.default_rng(0)
    given = []
    for n in range(3):
        index_map = np.zeros((RES, RES), np.uint8)
        top, left = rng.integers(0, RES - 5, 2)
        index_map[top : top + 4, left : left + 5] = n + 1
        index_map[0, n] = 4
        Image.fromarray(index_map).save(masks / f"m{n}.png")
        given.append(index_map)
    out = tmp_path / "out"
    run_cli(
        SAMPLE.main, argv(ckpts, out, "--mode", "mask", "--masks", str(masks), "--num_samples", "4")
    )
    m = json.loads((out / "manifest.json").read_text())
    assert m["generation"]["mode"] == "mask" and m["generation"]["mask_source"] == "dir"
    for i in range(4):
        assert np.array_equal(read(out / "masks" / f"{i:06d}.png"), given[i % 3])
        assert m["samples"][i]["mask"]["source"].endswith(f"m{i % 3}.png")
    assert (out / "grid.png").exists()


def test_flip_mask_transform_keeps_each_training_mask_in_place_up_to_mirroring(
    ckpts, inpainted, tmp_path
):
    out = tmp_path / "flip"
    run_cli(SAMPLE.main, argv(ckpts, out, *INPAINT, "--mask_transform", "flip"))
    m = json.loads((out / "manifest.json").read_text())
    assert m["generation"]["mask_transform"] == "flip"
    default = json.loads((inpainted / "manifest.json").read_text())
    assert "mask_transform" not in default["generation"]  # the default is not recorded
    flips = set()
    for i, rec in enumerate(m["samples"]):
        source = read(rec["mask"]["source"]) > 0  # the training mask (the toy set: canvas-sized)
        if rec["mask"]["flip_lr"]:
            source = source[:, ::-1]
        if rec["mask"]["flip_ud"]:
            source = source[::-1]
        assert np.array_equal(read(out / "masks" / f"{i:06d}.png") > 0, source), rec
        flips.add((rec["mask"]["flip_lr"], rec["mask"]["flip_ud"]))
    assert len(flips) > 1


def test_inpaint_mode_keeps_the_good_image_outside_the_band(inpainted):
    m = json.loads((inpainted / "manifest.json").read_text())
    band = m["generation"]["band"]
    assert band == conditioning.default_band(RES) == 2
    changed = 0
    for i in range(5):
        rec = m["samples"][i]
        assert rec["good"]["path"].endswith(".png") and "/train/good/" in rec["good"]["path"]
        assert {"flip", "rot90", "scale", "at", "source"} <= set(rec["mask"])
        mask = read(inpainted / "masks" / f"{i:06d}.png")
        assert mask.any()
        image, good = read(inpainted / "images" / f"{i:06d}.png"), read(rec["good"]["path"])
        inside = disk_dilate(torch.from_numpy(mask > 0)[None], band)[0].numpy()
        assert np.array_equal(image[~inside], good[~inside])
        changed += int((image[inside] != good[inside]).any())
    assert changed == 5


def test_inpaint_and_balanced_identical_under_1_and_2_processes(inpainted, launched):
    root, procs = launched
    for (name, g), proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} mpirun -n {g}: {err[-2000:]}"
    for name in ("inpaint", "balanced"):
        one, two = root / f"{name}1", root / f"{name}2"
        m1, m2 = (json.loads((f / "manifest.json").read_text()) for f in (one, two))
        assert m2["world_size"] == 2 and m1["generation"] == m2["generation"]
        for key in ("samples", "selection"):
            assert m1.get(key) == m2.get(key)
        assert snapshot(one / "masks") == snapshot(two / "masks")
        for p1 in sorted((one / "images").glob("*.png")):
            diff = read(p1).astype(int) - read(two / "images" / p1.name).astype(int)
            assert np.abs(diff).max() <= 1
    assert snapshot(root / "inpaint1" / "masks") == snapshot(inpainted / "masks")
    # --keep balanced: exactly the hand-set quotas, by main class, numbered contiguously
    m = json.loads((root / "balanced1" / "manifest.json").read_text())
    found = [
        conditioning.main_class(read(p)) for p in sorted((root / "balanced1/masks").glob("*.png"))
    ]
    assert sorted(found) == [1, 1, 4] and len(found) == 3
    assert [k["class"] for k in m["selection"]["kept"]] == [m["classes"][c - 1] for c in found]
    assert m["selection"]["quotas"] == {"crack": 2, "pit": 0, "scratch": 0, "stain": 1}
    assert len(m["selection"]["skipped_seeds"]) + 3 == m["selection"]["next_seed"]


@pytest.mark.parametrize("extra", [INPAINT, BALANCED])
def test_deleting_samples_and_rerunning_gives_them_back(ckpts, tmp_path, extra):
    out = tmp_path / "resume"
    run_cli(SAMPLE.main, argv(ckpts, out, *extra))
    before = snapshot(out)
    for sub in ("images", "masks", "masks_rgb"):
        (out / sub / "000001.png").unlink()
    run_cli(SAMPLE.main, argv(ckpts, out, *extra))
    after = snapshot(out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["last_run"]["generated"] == [1]
    for name, data in before.items():
        if name.parts[0] in ("images", "masks", "masks_rgb"):
            assert after[name] == data, name


def test_bad_inputs_give_one_error_line_and_leave_the_folder_as_it_was(
    ckpts, inpainted, tmp_path, capsys
):
    out = tmp_path / "kept"
    shutil.copytree(inpainted, out)
    before = snapshot(out)

    def masks_with(name, array):
        folder = tmp_path / name
        folder.mkdir()
        Image.fromarray(array).save(folder / "a.png")
        return str(folder)

    too_high = masks_with("high", np.full((RES, RES), K + 1, np.uint8))
    wrong_size = masks_with("size", np.zeros((RES + 2, RES), np.uint8))
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "000.png").write_bytes(b"\x89PNG not an image")
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(np.zeros((RES * 2, RES * 2, 3), np.uint8)).save(big / "0.png")
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(np.zeros((RES - 2, RES * 2, 3), np.uint8)).save(small / "0.png")
    masks_with("m", np.zeros((RES, RES), np.uint8))
    no_stain = tmp_path / "no_stain"
    shutil.copytree(ckpts["data"], no_stain)
    for p in (no_stain / "ground_truth" / "stain").glob("*.png"):
        Image.fromarray(np.zeros((RES, RES), np.uint8)).save(p)
    no_good = tmp_path / "no_good"
    shutil.copytree(ckpts["data"], no_good)
    shutil.rmtree(no_good / "train")
    inpaint = ["--mode", "inpaint", "--num_samples", "5"]
    cases = [
        (
            ["--mode", "mask", "--masks", too_high],
            [too_high, f"mask value {K + 1} > num_defect={K}"],
        ),
        (["--mode", "mask", "--masks", wrong_size], [wrong_size, f"{RES}x{RES + 2}", "resize"]),
        ([*inpaint, "--good_dir", str(empty)], [str(empty), "holds no images"]),
        (
            [*inpaint, "--good_dir", str(tmp_path / "nope")],
            [str(tmp_path / "nope"), "does not exist"],
        ),
        ([*inpaint, "--good_dir", str(broken)], [str(broken / "000.png"), "unreadable"]),
        (
            [*inpaint, "--good_dir", str(big), "--strict_size", "--size", str(RES)],
            [str(big / "0.png"), "--strict_size"],
        ),
        ([*inpaint, "--good_dir", str(small)], [str(small / "0.png"), "smaller than the models'"]),
        ([*inpaint, "--size", str(RES - 2)], ["--size", f"{RES}.."]),
        (
            [*inpaint, "--good_dir", str(big), "--mask_source", "dir", "--masks", str(tmp_path / "m")],
            [str(tmp_path / "m" / "a.png"), f"{RES}x{RES}", f"{2 * RES}x{2 * RES}"],
        ),
        ([*inpaint, "--good_dir", str(big), "--mask_source", "joint"], ["--mask_source joint"]),
        (["--mode", "mask", "--size", str(RES)], ["--size", "--mode inpaint only"]),
        (
            [
                "--mode",
                "mask",
                "--mask_source",
                "train",
                "--data_dir",
                str(no_stain),
                "--per_class",
                "1",
            ],
            [str(no_stain), "'stain'", "--per_class"],
        ),
        ([*inpaint, "--data_dir", str(no_good)], [str(no_good), "--good_dir", "good images"]),
        (["--band", "3"], ["--band", "--mode joint"]),
        (["--good_texture", "true"], ["--good_texture", "--mode joint"]),
        (["--mask_transform", "flip"], ["--mask_transform", "--mode joint"]),
        (
            [*inpaint, "--mask_source", "joint", "--mask_transform", "flip"],
            ["--mask_transform", "--mask_source train only"],
        ),
        (["--mode", "mask", "--good_texture", "true"], ["--good_texture", "--mode inpaint only"]),
        (["--keep", "balanced", "--quota", "rust=2"], ["--quota", "'rust'", "crack"]),
        ([*inpaint, "--band", "3"], [str(out / "manifest.json"), "band 2 there vs 3 now"]),
    ]
    for extra, needles in cases:
        code, err = run_error(SAMPLE.main, argv(ckpts, out, *extra), capsys)
        assert_one_error(code, err, needles)
        assert snapshot(out) == before
