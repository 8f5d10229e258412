"""
Nothing lost (issue 21): checkpoint pruning keeps the run and the user's files, `--overwrite` never
takes a folder without manifest, a smaller --num_samples cannot leave undescribed samples, inpainting
matches classes by name, masks must be lossless, and every number is checked before anything is
written, blaming the flag or config source it came from.
"""

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import assert_one_error, load_script, run_error
from PIL import Image

from defect_gen.data.toy import write_dataset

REPO = Path(__file__).resolve().parents[1]
RES = 16
TRAIN, SAMPLE, PREPARE, EVALUATE = (
    load_script(n) for n in ("train", "sample", "prepare_data", "evaluate")
)


def snapshot(folder):
    """Give {relative path: bytes} of every file under `folder` (None when it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def train_argv(work, data, *overrides, kind="large"):
    return [
        "--config", str(REPO / f"configs/tiny_{kind}.yaml"), "--work_dir", str(work),
        "--data_dir", str(data), "train.max_images=0", f"data.params.resolution={RES}",
        "data.params.num_image_train=2", "data.bs_per_gpu=2", *overrides,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Two tiny checkpoints (16 px, 4 classes) trained 2 steps on a toy MVTec-layout set."""
    root = tmp_path_factory.mktemp("lost_ckpts")
    write_dataset(root / "data", layout="mvtec", num_per_type=2, size=RES, seed=0)
    paths = {"data": root / "data", "root": root}
    for kind in ("large", "small"):
        TRAIN.main(train_argv(root / kind, root / "data", "train.iterations=2", kind=kind))
        paths[kind] = str(root / kind / "checkpoints" / "ckpt_000002.pt")
    return paths


def sample_argv(ckpts, out, *extra):
    return [
        "--large_recep", ckpts["large"], "--small_recep", ckpts["small"], "--step_inference", "400",
        "--sample_dir", str(out), "--batch_size", "4", "--timestep_respacing", "2", "--device", "cpu",
        "--no_progress", *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# 1. Checkpoint pruning


@pytest.mark.parametrize("user_file", ["ckpt_best.pt", "ckpt_final.pt", "ckpt_000002_mine.pt"])
def test_pruning_keeps_user_files_and_the_latest_checkpoint(ckpts, tmp_path, capsys, user_file):
    work = tmp_path / "run"
    (work / "checkpoints").mkdir(parents=True)
    (work / "checkpoints" / user_file).write_bytes(b"the user's")
    TRAIN.main(
        train_argv(
            work, ckpts["data"], "train.iterations=4", "train.save_ckpt_interval=2",
            "train.keep_checkpoints=1",
        )  # fmt: skip
    )
    folder = work / "checkpoints"
    assert (folder / user_file).read_bytes() == b"the user's"
    latest = (folder / "latest").read_text().strip()
    assert latest == "ckpt_000004.pt" and (folder / latest).is_file()
    assert not (folder / "ckpt_000002.pt").exists()  # the run's own older checkpoint is pruned
    done = [line for line in capsys.readouterr().out.splitlines() if line.startswith("done:")]
    assert Path(done[-1].rsplit("checkpoint ", 1)[1]).is_file()


def test_prune_checkpoints_takes_only_written_names(tmp_path):
    from defect_gen.training.checkpoints import prune_checkpoints

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("ckpt_000001.pt", "ckpt_000002.pt", "ckpt_000003.pt", "ckpt_000009.pt"):
        (folder / name).write_bytes(b"x")
    (folder / "latest").write_text("ckpt_000002.pt\n")
    # ckpt_000009.pt was not written by this run; ckpt_000002.pt is the one `latest` names
    written = ["ckpt_000001.pt", "ckpt_000002.pt", "ckpt_000003.pt"]
    removed = prune_checkpoints(str(tmp_path), 1, written)
    assert [Path(p).name for p in removed] == ["ckpt_000001.pt"]
    assert sorted(os.listdir(folder)) == [
        "ckpt_000002.pt", "ckpt_000003.pt", "ckpt_000009.pt", "latest",
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# 2. --overwrite and folders without a manifest


def test_overwrite_refuses_a_folder_without_manifest(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    Image.new("RGB", (RES, RES), (1, 2, 3)).save(out / "images" / "000001.png")
    before = snapshot(out)
    for extra in ((), ("--overwrite",)):
        code, err = run_error(SAMPLE.main, sample_argv(ckpts, out, "--num_samples", "2", *extra), capsys)
        assert_one_error(code, err, ["images/000001.png", "another --sample_dir"])
        assert "pass --overwrite" not in err[-1]
        assert snapshot(out) == before


# --------------------------------------------------------------------------------------------------
# 3. A smaller --num_samples


def test_smaller_num_samples_is_refused_and_changes_nothing(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    SAMPLE.main(sample_argv(ckpts, out, "--num_samples", "3"))
    before = snapshot(out)
    code, err = run_error(SAMPLE.main, sample_argv(ckpts, out, "--num_samples", "1"), capsys)
    assert_one_error(code, err, ["holds 3 samples", "--num_samples 1"])
    assert snapshot(out) == before
    # the same count or more goes on
    SAMPLE.main(sample_argv(ckpts, out, "--num_samples", "4"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_samples"] == 4 and len(os.listdir(out / "images")) == 4


# --------------------------------------------------------------------------------------------------
# 4. Classes by name in inpainting


@pytest.mark.parametrize("rename", [("crack", "zz_crack"), ("pit", "hole")])
def test_inpaint_refuses_a_dataset_with_other_classes(ckpts, tmp_path, capsys, rename):
    data = tmp_path / "data"
    shutil.copytree(ckpts["data"], data)
    for sub in ("test", "ground_truth"):
        (data / sub / rename[0]).rename(data / sub / rename[1])
    out = tmp_path / "out"
    argv = sample_argv(
        ckpts, out, "--mode", "inpaint", "--mask_source", "train", "--data_dir", str(data),
        "--num_samples", "2",
    )  # fmt: skip
    code, err = run_error(SAMPLE.main, argv, capsys)
    assert_one_error(code, err, ["classes", rename[1], "crack, pit, scratch, stain"])
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# 5. Lossy masks


def test_jpeg_masks_are_refused_in_mask_mode(ckpts, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    index_map = np.zeros((RES, RES), np.uint8)
    index_map[4:9, 4:9] = 2
    Image.fromarray(index_map).save(masks / "a.png")
    Image.fromarray(index_map).save(masks / "b.jpg", quality=95)
    out = tmp_path / "out"
    argv = sample_argv(ckpts, out, "--mode", "mask", "--masks", str(masks), "--num_samples", "2")
    code, err = run_error(SAMPLE.main, argv, capsys)
    assert_one_error(code, err, [str(masks / "b.jpg"), "lossy"])
    assert not out.exists()


def test_jpeg_masks_are_refused_in_datasets(tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(data, layout="official", num_per_type=2, size=RES, seed=0)
    mask = sorted((data / "converted_ground_truth" / "pit").iterdir())[0]
    jpeg = mask.with_suffix(".jpg")
    Image.open(mask).save(jpeg, quality=95)
    mask.unlink()
    code = PREPARE.main([str(data)])
    assert code == 2
    printed = capsys.readouterr()
    assert f"{jpeg}: JPEG mask: lossy" in printed.out + printed.err
    from defect_gen.data.layouts import find_pairs
    from defect_gen.errors import DatasetError

    with pytest.raises(DatasetError, match="lossy"):
        find_pairs(str(data))


# --------------------------------------------------------------------------------------------------
# 6. Every number, checked before anything is written


@pytest.mark.parametrize(
    "extra, flag",
    [
        (("--eta", "nan", "--sampler", "ddim"), "--eta"),
        (("--eta", "5", "--sampler", "ddim"), "--eta"),
        (("--seed", "99999999999999999999"), "--seed"),
        (("--num_samples", "1000000000000"), "--num_samples"),
        (("--mode", "inpaint", "--band", "2000000000"), "--band"),
        (("--mode", "inpaint", "--band", "17"), "--band"),  # wider than the 16 px image
        (("--mode", "inpaint", "--per_class", "100000000000"), "--num_samples"),
    ],
)
def test_sample_numbers_are_checked_before_writing(ckpts, tmp_path, capsys, extra, flag):
    out = tmp_path / "out"
    code, err = run_error(SAMPLE.main, sample_argv(ckpts, out, *extra), capsys)
    assert_one_error(code, err, [flag])
    assert not out.exists()


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--lr", "0"), ("--lr", "nan"), ("--dice_weight", "-1"), ("--dice_weight", "nan"),
        ("--width", "0"), ("--copy_paste_probability", "2"), ("--synthetic_ratio", "inf"),
        ("--memorisation_threshold", "nan"),
    ],
)  # fmt: skip
def test_evaluate_numbers_are_checked_before_writing(tmp_path, capsys, flag, value):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "out"
    argv = ["--data_dir", str(data), "--out", str(out), flag, value]
    code, err = run_error(EVALUATE.main, argv, capsys)
    assert_one_error(code, err, [flag])
    assert not out.exists()


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.seed=99999999999999999999", "train.seed"),
        ("optimizer.params.lr=.nan", "optimizer.params.lr"),
        ("model.params.model_channels=100000032", "model.params.model_channels"),
        ("diffusion.params.num_timestep=1000000000", "diffusion.params.num_timestep"),
    ],
)
def test_config_numbers_are_checked_and_blame_the_command_line(tmp_path, capsys, override, needle):
    work = tmp_path / "run"
    code, err = run_error(TRAIN.main, train_argv(work, tmp_path, override), capsys)
    assert_one_error(code, err, [needle, "command line"])
    assert not work.exists()


def test_recipe_keys_blame_the_source_they_came_from(tmp_path, capsys):
    work = tmp_path / "run"
    code, err = run_error(TRAIN.main, train_argv(work, tmp_path, "data.params.crop=3"), capsys)
    assert_one_error(code, err, ["command line", "data.params.crop"])
    config = tmp_path / "crop.yaml"
    raw = yaml.safe_load((REPO / "configs/tiny_large.yaml").read_text())
    raw.setdefault("data", {}).setdefault("params", {})["crop"] = 3
    config.write_text(yaml.safe_dump(raw))
    argv = train_argv(work, tmp_path)
    argv[1] = str(config)
    code, err = run_error(TRAIN.main, argv, capsys)
    assert_one_error(code, err, [str(config), "data.params.crop"])
    assert "command line" not in err[-1]


# --------------------------------------------------------------------------------------------------
# Also: a full disk names the file; a checkpoints/ folder that cannot be written stops before step 1


def test_full_disk_names_the_file(tmp_path, capsys, monkeypatch):
    from defect_gen import fileio

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    target = tmp_path / "manifest.json"
    target.write_text("old")
    code, err = run_error(lambda argv: fileio.atomic_write_text(target, "new"), [], capsys)
    assert_one_error(code, err, [str(target), "No space left"])
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["manifest.json"]


def test_unwritable_checkpoints_folder_stops_before_the_first_step(ckpts, tmp_path, capsys):
    work = tmp_path / "run"
    work.mkdir()
    (work / "checkpoints").write_text("not a folder")
    argv = train_argv(work, ckpts["data"], "train.iterations=2")
    code, err = run_error(TRAIN.main, argv, capsys)
    assert_one_error(code, err, ["checkpoints"])
    assert sorted(os.listdir(work)) == ["checkpoints"]  # no config.yaml, no log: no step ran
