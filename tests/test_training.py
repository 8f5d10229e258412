"""Training end to end: configs, bad inputs, exact resume, crash safety, MPI, the shell wrappers."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from PIL import Image

from defect_gen.data.toy import write_dataset
from defect_gen.errors import ConfigError
from defect_gen.fileio import load_torch
from defect_gen.training.checkpoints import latest_checkpoint
from defect_gen.training.config import load_config, model_params
from defect_gen.unet import UNetModel

BIN = Path(sys.executable).parent
# A very small large-model run: 16 px, batch 2, a preview of 1 image with 2 steps, at the end only.
FAST = [
    "data.params.resolution=16",
    "data.bs_per_gpu=2",
    "train.log_interval=1",
    "train.log_image_interval=1000",
    "train.max_images=1",
    "train.preview_respacing=2",
    "train.keep_checkpoints=null",
]


def env():
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.pop("DEFECT_GEN_FAULT", None)
    e["OMP_NUM_THREADS"] = "1"
    return e


def train(work_dir, data_dir, *extra, config="configs/tiny_large.yaml", fault=None, launcher=()):
    e = env()
    if fault:
        e["DEFECT_GEN_FAULT"] = fault
    script = REPO / "tests" / "fault_train.py" if fault else REPO / "scripts" / "train.py"
    cmd = [*launcher, sys.executable, str(script), "--config", str(REPO / config),
           "--work_dir", str(work_dir), "--data_dir", str(data_dir), *FAST, *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=e, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_dataset(root / "data", layout="official", num_per_type=3, size=16, seed=0)
    return root / "data"


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ------------------------------------------------------------------------------------------------
# Configs


RELEASE_LARGE = {
    "diffusion": {"target": "diffusion.base_diffusion.ColdDiffusion",
                  "params": {"parameterization": "x0", "schedule": "cosine", "num_timestep": 1000}},
    "model": {"target": "models.unet.openaiunet.UNetModel",
              "params": {"image_size": 256, "in_channels": 9, "out_channels": 9, "model_channels": 128,
                         "attention_downsample": [8, 16, 32], "num_res_blocks": 2, "num_head_channels": 16,
                         "channel_mult": [1, 1, 2, 2, 4, 4]},
              "ckpt": None},
    "data": {"bs_per_gpu": 2, "num_workers": 1,
             "params": {"dir": "/home/zfchen/working/cotton_fabric/cotton_fabric_mask", "resolution": 256,
                        "num_image_train": 5}},
    "optimizer": {"params": {"lr": 0.0001, "weight_decay": 0.002}},
    "train": {"iterations": 160000, "log_image_interval": 10000, "save_ckpt_interval": 10000,
              "max_images": 8, "eval_interval": 10},
}  # fmt: skip


def release_small():
    cfg = json.loads(json.dumps(RELEASE_LARGE))
    cfg["model"] = {
        "target": "models.unet.unet_receptive.UNetModel",
        "params": {"image_size": 256, "in_channels": 6, "out_channels": 6, "model_channels": 192,
                   "attention_resolutions": 2, "num_res_blocks": 2, "num_head_channels": 16,
                   "channel_mult": [1, 2, 4]},
        "ckpt": None,
    }  # fmt: skip
    cfg["data"]["params"]["num_image_train"] = 50
    return cfg


def test_release_yaml_files_load(tmp_path):
    (tmp_path / "large_recep.yml").write_text(yaml.safe_dump(RELEASE_LARGE))
    (tmp_path / "small_recep.yml").write_text(yaml.safe_dump(release_small()))
    large = load_config(tmp_path / "large_recep.yml")
    assert large["data"]["params"]["num_defect"] == 5
    small = load_config(tmp_path / "small_recep.yml")
    assert small["data"]["params"]["num_defect"] == 2
    with pytest.raises(ConfigError, match="6 in/out channels but num_defect=5 needs 9"):
        load_config(tmp_path / "small_recep.yml", num_defect=5)


def test_shipped_configs_hold_release_values():
    large, small = load_config(REPO / "configs/large.yaml"), load_config(
        REPO / "configs/small.yaml"
    )
    assert large["model"]["params"] == {**RELEASE_LARGE["model"]["params"]}
    assert small["model"]["params"]["model_channels"] == 192
    for cfg in (large, small):
        assert cfg["optimizer"]["params"]["lr"] == 1e-4
        assert cfg["optimizer"]["params"]["weight_decay"] == 0.002
        assert cfg["data"]["params"]["num_defect"] == 5


def test_unknown_key_is_refused_with_allowed_keys(tmp_path):
    cfg = json.loads(json.dumps(RELEASE_LARGE))
    cfg["train"]["iteration"] = 5
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(
        ConfigError, match=r"bad.yml: unknown key 'train.iteration'; allowed: .*iterations"
    ):
        load_config(tmp_path / "bad.yml")


def test_overrides_parse_yaml_scalars(tmp_path):
    (tmp_path / "c.yml").write_text(yaml.safe_dump(RELEASE_LARGE))
    cfg = load_config(
        tmp_path / "c.yml",
        [
            "train.iterations=20",
            "data.params.resolution=64",
            "train.precision=bf16",
            "optimizer.params.lr=3e-4",
        ],
    )
    assert cfg["train"]["iterations"] == 20 and cfg["data"]["params"]["resolution"] == 64
    assert cfg["train"]["precision"] == "bf16" and cfg["optimizer"]["params"]["lr"] == 3e-4


def test_auto_channels_follow_num_defect():
    for k in (1, 3, 5):
        cfg = load_config(REPO / "configs/tiny_large.yaml", num_defect=k)
        params = cfg["model"]["params"]
        assert params["in_channels"] == params["out_channels"] == k + 4
        assert cfg["data"]["params"]["num_defect"] == k
    with pytest.raises(ConfigError, match=r"tiny_small.yaml: .*auto .*num_defect is unknown"):
        load_config(REPO / "configs/tiny_small.yaml")
    deferred = load_config(REPO / "configs/tiny_small.yaml", need_num_defect=False)
    assert deferred["model"]["params"]["in_channels"] == "auto"
    assert deferred["data"]["params"]["num_defect"] is None
    # One explicit side fixes the other and num_defect.
    cfg = load_config(REPO / "configs/tiny_small.yaml", ["model.params.in_channels=7"])
    assert cfg["model"]["params"]["out_channels"] == 7 and cfg["data"]["params"]["num_defect"] == 3
    with pytest.raises(ConfigError, match=r"model.params.in_channels must be an integer in \[1, 259\] or auto"):
        load_config(REPO / "configs/tiny_small.yaml", ["model.params.in_channels=eight"])


def _release_large_with(tmp_path, **params):
    cfg = json.loads(json.dumps(RELEASE_LARGE))
    cfg["model"]["params"].update(params)
    (tmp_path / "large_recep.yml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "large_recep.yml"


def test_model_keys_are_checked_against_the_model_class(tmp_path):
    # attention_resolutions is a keyword of the small (patch) model only.
    path = _release_large_with(tmp_path, attention_resolutions=[2, 4])
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "large_recep.yml" in str(err.value) and "'model.params.attention_resolutions'" in str(
        err.value
    )
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"large_recep.yml: .*'model.params.channel_mults'"):
        load_config(_release_large_with(tmp_path, channel_mults=[1, 2]))
    with pytest.raises(ConfigError, match=r"large_recep.yml: model.params.num_classes must be nu"):
        load_config(_release_large_with(tmp_path, num_classes=3))
    assert load_config(_release_large_with(tmp_path, num_classes=None))["model"]["params"]


def test_resolution_check_uses_the_model_default_channel_mult(tmp_path):
    levels = len(model_params(UNetModel)["channel_mult"])
    path = _release_large_with(tmp_path, channel_mult=None)
    refused = f"resolution 36 must be a multiple of {2 ** (levels - 1)}"
    with pytest.raises(ConfigError, match=refused):
        load_config(path, ["data.params.resolution=36"])
    with pytest.raises(RuntimeError):  # the model itself cannot take it either
        UNetModel(36, 9, 32, 9, 1, attention_downsample=())(
            torch.zeros(1, 9, 36, 36), torch.zeros(1)
        )
    assert load_config(path, ["data.params.resolution=64"])["data"]["params"]["resolution"] == 64


def test_release_eval_interval_is_accepted(tmp_path):
    cfg = load_config(_release_large_with(tmp_path), ["train.eval_interval=500"])
    assert cfg["train"]["eval_interval"] == 500


# ------------------------------------------------------------------------------------------------
# Bad input through scripts/train.py


@pytest.fixture(scope="module")
def trained_dir(toy, tmp_path_factory):
    """A run folder with a 2-step checkpoint, reused by the bad-input tests to prove it stays intact."""
    work = tmp_path_factory.mktemp("trained") / "run"
    result = train(work, toy, "train.iterations=2", "train.save_ckpt_interval=2")
    assert result.returncode == 0, result.stderr
    return work


def _copy(toy, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(toy, dst)
    return dst


def _break_image_without_mask(d):
    os.remove(d / "converted_ground_truth" / "pit" / "001.png")
    return "test/pit/001.png", "without a mask"


def _break_mask_without_image(d):
    os.remove(d / "test" / "pit" / "002.png")
    return "converted_ground_truth/pit/002.png", "without an image"


def _break_unreadable(d):
    (d / "test" / "crack" / "000.png").write_bytes(b"not a png at all")
    return "test/crack/000.png", ""


def _break_size_mismatch(d):
    Image.fromarray(np.zeros((20, 16, 3), np.uint8)).save(d / "test" / "stain" / "000.png")
    return "test/stain/000.png", "but its image"


def _break_mask_value(d):
    Image.fromarray(np.full((16, 16), 9, np.uint8)).save(
        d / "converted_ground_truth" / "scratch" / "001.png"
    )
    return "converted_ground_truth/scratch/001.png", "9"


def _break_no_pairs(d):
    shutil.rmtree(d / "test")
    shutil.rmtree(d / "converted_ground_truth")
    (d / "test").mkdir()
    return str(d.name), ""


def _break_empty_type(d):
    for f in (d / "test" / "pit").iterdir():
        f.unlink()
    for f in (d / "converted_ground_truth" / "pit").iterdir():
        f.unlink()
    return "pit", "empty"


@pytest.mark.parametrize(
    "breaker",
    [_break_image_without_mask, _break_mask_without_image, _break_unreadable, _break_size_mismatch,
     _break_mask_value, _break_no_pairs, _break_empty_type],
    ids=lambda f: f.__name__[len("_break_"):],
)  # fmt: skip
def test_bad_dataset_gives_one_error_line(toy, trained_dir, tmp_path, breaker):
    data = _copy(toy, tmp_path)
    file_hint, problem_hint = breaker(data)
    before = latest_checkpoint(trained_dir)
    before_bytes = Path(before).read_bytes()
    result = train(trained_dir, data, "train.iterations=4")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = last_line(result.stderr)
    assert line.startswith("error: ") and file_hint in line, line
    assert problem_hint.lower() in line.lower(), line
    assert latest_checkpoint(trained_dir) == before
    assert Path(before).read_bytes() == before_bytes
    load_torch(before)


def test_corrupt_resume_checkpoint_gives_one_error_line(toy, trained_dir, tmp_path):
    bad = tmp_path / "truncated.pt"
    data = Path(latest_checkpoint(trained_dir)).read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    result = train(tmp_path / "run", toy, "train.iterations=4", "--resume", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    line = last_line(result.stderr)
    assert line.startswith("error: ") and "truncated.pt" in line and "corrupt" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_num_defect_that_does_not_fit_the_model_is_refused(toy, tmp_path):
    explicit = ["model.params.in_channels=8", "model.params.out_channels=8"]
    result = train(tmp_path / "run", toy, "--num_defect", "5", *explicit)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # both numbers came from the command line, and the message says so
    line = last_line(result.stderr)
    assert "needs 9" in line and "command line" in line and "--num_defect" in line
    assert not (tmp_path / "run").exists()


def test_auto_channels_take_the_number_of_classes_the_dataset_shows(trained_dir):
    config = yaml.safe_load((trained_dir / "config.yaml").read_text())
    assert config["data"]["params"]["num_defect"] == 4  # the toy dataset's classes
    assert (
        config["model"]["params"]["in_channels"] == config["model"]["params"]["out_channels"] == 8
    )


def test_non_finite_loss_stops_and_keeps_last_checkpoint(toy, tmp_path):
    work = tmp_path / "run"
    result = train(
        work, toy, "train.iterations=6", "train.save_ckpt_interval=1", "optimizer.params.lr=1e30"
    )
    assert result.returncode == 2, result.stderr
    line = last_line(result.stderr)
    assert "non-finite loss" in line and "Traceback" not in result.stderr
    ckpt = load_torch(latest_checkpoint(work))
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


# ------------------------------------------------------------------------------------------------
# Resume and crash safety


def _state(path):
    ckpt = load_torch(path)
    return ckpt["model"], ckpt["ema"], ckpt["optimizer"]["state"], ckpt["step"]


def _assert_equal_states(a, b):
    for da, db in zip(a[:2], b[:2]):
        assert da.keys() == db.keys()
        for k in da:
            assert torch.equal(da[k], db[k]), k
    for k in a[2]:
        for name in a[2][k]:
            assert torch.equal(a[2][k][name], b[2][k][name]), (k, name)
    assert a[3] == b[3]


RECIPE = [
    "train.ema_warmup=true", "train.seperate_channel_loss=true", "diffusion.params.mask_mode=consistent",
    "train.mask_class_weight_power=0.5", "data.params.crop=8",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [False, True], ids=["plain", "recipe"])
def test_exact_resume_after_kill(toy, tmp_path, recipe):
    # recipe: with the EMA warm-up, the class-weighted CE mask loss and defect-centred crops.
    args = ["train.iterations=6", "train.save_ckpt_interval=3", "data.params.random_flip=true"]
    args += RECIPE if recipe else ["train.ema_warmup=false"]
    straight = train(tmp_path / "straight", toy, *args)
    assert straight.returncode == 0, straight.stderr
    killed = train(tmp_path / "resumed", toy, *args, fault="kill_after_save:3")
    assert killed.returncode != 0
    assert latest_checkpoint(tmp_path / "resumed").endswith("ckpt_000003.pt")
    resumed = train(tmp_path / "resumed", toy, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    _assert_equal_states(
        _state(tmp_path / "straight/checkpoints/ckpt_000006.pt"),
        _state(tmp_path / "resumed/checkpoints/ckpt_000006.pt"),
    )
    weights = [
        load_torch(tmp_path / run / "checkpoints/ckpt_000006.pt")["mask_class_weights"]
        for run in ("straight", "resumed")
    ]
    assert weights[0] == weights[1] and (weights[0] is not None) == recipe


@pytest.mark.slow
def test_kill_while_writing_checkpoint_keeps_latest_complete(toy, tmp_path):
    work = tmp_path / "run"
    result = train(
        work, toy, "train.iterations=4", "train.save_ckpt_interval=2", fault="kill_during_save:4"
    )
    assert result.returncode != 0
    latest = latest_checkpoint(work)
    assert latest.endswith("ckpt_000002.pt")
    assert load_torch(latest)["step"] == 2
    assert not (work / "checkpoints" / "ckpt_000004.pt").exists()
    # Training picks up from the complete checkpoint.
    again = train(work, toy, "train.iterations=4", "train.save_ckpt_interval=2")
    assert again.returncode == 0, again.stderr
    assert load_torch(latest_checkpoint(work))["step"] == 4


# ------------------------------------------------------------------------------------------------
# Several processes and the wrappers


@pytest.mark.skipif(
    shutil.which("mpirun", path=str(BIN)) is None, reason="mpirun not installed in the venv"
)
def test_mpirun_two_ranks_stay_in_sync_and_read_different_samples(toy, tmp_path):
    work = tmp_path / "run"
    result = train(work, toy, "train.iterations=5", launcher=[str(BIN / "mpirun"), "-n", "2"])
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    start = next(e for e in events if e.get("event") == "start")
    assert start["world_size"] == 2
    first = next(e for e in events if e.get("event") == "first_batch")
    rank0, rank1 = first["indices"]
    assert set(rank0).isdisjoint(rank1)
    end = next(e for e in events if e.get("event") == "end")
    assert end["ranks_in_sync"] is True and end["step"] == 5


@pytest.mark.skipif(
    shutil.which("mpirun", path=str(BIN)) is None, reason="mpirun not installed in the venv"
)
def test_mpirun_non_finite_loss_on_one_rank_stops_every_rank(toy, tmp_path):
    work = tmp_path / "run"
    args = ["train.iterations=6", "train.save_ckpt_interval=2"]
    launcher = [str(BIN / "mpirun"), "-n", "2", "-outfile-pattern", str(tmp_path / "out.%r"),
                "-errfile-pattern", str(tmp_path / "err.%r")]  # fmt: skip
    started = time.monotonic()
    result = train(work, toy, *args, fault="nan_loss_rank1:3", launcher=launcher)
    assert time.monotonic() - started < 60  # nothing waits for the stopped rank
    assert result.returncode != 0
    lines = [last_line((tmp_path / f"err.{rank}").read_text()) for rank in (0, 1)]
    assert lines[0] == lines[1], lines  # the same one-line error on both ranks
    assert lines[0].startswith("error: non-finite loss (") and "at step 3" in lines[0]
    assert "nan on rank 1" in lines[0] and "ckpt_000002.pt" in lines[0]
    for rank in (0, 1):
        assert "Traceback" not in (tmp_path / f"err.{rank}").read_text()
    latest = latest_checkpoint(work)
    assert latest.endswith("ckpt_000002.pt") and load_torch(latest)["step"] == 2
    assert not (work / "checkpoints" / "ckpt_000004.pt").exists()


def test_previews_at_the_end_and_none_with_max_images_zero(toy, trained_dir, tmp_path):
    # The 2-step fixture run previews at its last step (log_image_interval 1000 is never reached).
    assert [p.name for p in (trained_dir / "samples").iterdir()] == ["step_000002.png"]
    work = tmp_path / "run"
    result = train(work, toy, "train.iterations=2", "train.max_images=0")
    assert result.returncode == 0, result.stderr
    assert load_torch(latest_checkpoint(work))["step"] == 2
    assert not (work / "samples").exists() or not any((work / "samples").iterdir())


def test_train_large_wrapper_trains_on_cpu(toy, tmp_path):
    work = tmp_path / "run"
    # Overrides before, between and after the options.
    cmd = ["sh", str(REPO / "train_large.sh"), "train.iterations=2", "--config",
           str(REPO / "configs/tiny_large.yaml"), *FAST, "--work_dir", str(work), "--data_dir", str(toy),
           "--num_defect", "6", "train.log_interval=2"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert load_torch(latest_checkpoint(work))["step"] == 2
    config = yaml.safe_load((work / "config.yaml").read_text())
    assert config["model"]["target"] == "large" and config["train"]["iterations"] == 2
    assert config["train"]["log_interval"] == 2 and config["model"]["params"]["in_channels"] == 10
