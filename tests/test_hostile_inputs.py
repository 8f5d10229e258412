"""
Hostile inputs: every bad value, folder or flag gives exit code 2 (or another non-zero code), exactly
one `error:` line and no traceback, and leaves every file of the folders involved byte-identical (or,
for a refused fresh run, creates nothing). Most cases run the scripts' main() in-process and fail
before any model is built; a few run real processes.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script, run_command
from PIL import Image

from defect_gen.data.toy import write_dataset
from defect_gen.lock import LOCK_NAME, FolderLock

REPO = Path(__file__).resolve().parents[1]
RES = 16
# A 16 px run with one 2-step preview at the end and a checkpoint at step 2.
FAST = [
    f"data.params.resolution={RES}", "data.bs_per_gpu=2", "data.params.num_image_train=2",
    "train.log_interval=1", "train.max_images=1", "train.preview_respacing=2",
    "train.save_ckpt_interval=2",
]  # fmt: skip


TRAIN, SAMPLE, PREPARE, EVALUATE = (
    load_script(n) for n in ("train", "sample", "prepare_data", "evaluate")
)
NO_CUDA_DEVICE = "gpu" if not torch.cuda.is_available() else "cuda:99"


def snapshot(*folders):
    """Give {path: bytes} of every file (hidden ones too) under `folders`; None for a missing folder."""
    out = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            out[str(folder)] = None
        elif folder.is_file():
            out[str(folder)] = folder.read_bytes()
        else:
            for path in sorted(folder.rglob("*")):
                out[str(path)] = path.read_bytes() if path.is_file() else "dir"
    return out


def run_main(module, argv, capsys):
    """Run a script's main(argv) as its __main__ does; give (exit code, stderr lines)."""
    capsys.readouterr()
    code = run_command(module.main, argv) or 0
    return code, capsys.readouterr().err.splitlines()


def assert_one_error(code, err, *needles):
    errors = [line for line in err if line.startswith("error:")]
    assert code not in (0, None), err
    assert len(errors) == 1, err
    assert not any("Traceback" in line for line in err), err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


# ------------------------------------------------------------------------------------------------
# Fixtures: a toy dataset, a 2-step large and small run, a folder of 2 samples


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    write_dataset(root / "data", layout="official", num_per_type=2, size=RES, seed=0)
    runs = {}
    for kind in ("large", "small"):
        work = root / f"run_{kind}"
        TRAIN.main([
            "--config", str(REPO / f"configs/tiny_{kind}.yaml"), "--work_dir", str(work),
            "--data_dir", str(root / "data"), "--device", "cpu", *FAST, "train.iterations=2",
        ])  # fmt: skip
        runs[kind] = work
        assert (work / "checkpoints" / "ckpt_000002.pt").exists()
    samples = root / "samples"
    SAMPLE.main(sample_argv(runs, samples))
    assert (samples / "manifest.json").exists()
    return {"root": root, "data": root / "data", "runs": runs, "samples": samples}


def ckpt(world, kind):
    return str(world["runs"][kind] / "checkpoints" / "ckpt_000002.pt")


def sample_argv(runs, out, *extra):
    return [
        "--large_recep", str(runs["large"] / "checkpoints" / "ckpt_000002.pt"),
        "--small_recep", str(runs["small"] / "checkpoints" / "ckpt_000002.pt"),
        "--step_inference", "500", "--sample_dir", str(out), "--num_samples", "2",
        "--batch_size", "2", "--timestep_respacing", "4", "--device", "cpu", "--no_progress", *extra,
    ]  # fmt: skip


def train_argv(world, work, *extra, config="tiny_large", device="cpu"):
    return [
        "--config", str(REPO / "configs" / f"{config}.yaml"), "--work_dir", str(work),
        "--data_dir", str(world["data"]), "--device", device, *FAST, "train.iterations=4", *extra,
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------
# train.py: bad config values refused before anything is written (fresh run: nothing created)

BAD_VALUES = [
    ("train.keep_checkpoints=-2", "train.keep_checkpoints"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints"),
    ("train.keep_checkpoints=two", "train.keep_checkpoints"),
    ("optimizer.params.lr=abc", "optimizer.params.lr"),
    ("optimizer.params.lr=-1e-4", "optimizer.params.lr"),
    ("optimizer.params.lr=0", "optimizer.params.lr"),
    ("optimizer.params.weight_decay=-1", "optimizer.params.weight_decay"),
    ("optimizer.params.betas=[0.9]", "optimizer.params.betas"),
    ("optimizer.params.betas=[0.9,1.5]", "optimizer.params.betas"),
    ("train.ema_rate=1.5", "train.ema_rate"),
    ("train.ema_rate=fast", "train.ema_rate"),
    ("train.ema_rate=.nan", "train.ema_rate"),
    ("data.params.resolution=abc", "data.params.resolution"),
    ("data.params.resolution=0", "data.params.resolution"),
    ("data.params.resolution=18", "data.params.resolution"),
    ("model.params.model_channels=20", "model.params.model_channels"),
    ("model.params.model_channels=0", "model.params.model_channels"),
    ("model.params.model_channels=48", "32-group normalisation"),
    ("train.iterations=0", "train.iterations"),
    ("train.iterations=-5", "train.iterations"),
    ("train.iterations=1.5", "train.iterations"),
    ("data.bs_per_gpu=0", "data.bs_per_gpu"),
    ("train.precision=fp8", "train.precision"),
    ("train.grad_clip=-1", "train.grad_clip"),
    ("train.seed=-1", "train.seed"),
    ("train.compile=maybe", "train.compile"),
    ("diffusion.params.num_timestep=0", "diffusion.params.num_timestep"),
    ("diffusion.params.schedule=cubic", "diffusion.params.schedule"),
    ("model.params.dropout=2", "model.params.dropout"),
    ("train.iteration=5", "unknown key 'train.iteration'"),
    ("train.iterations", "section.key=value"),
]


@pytest.mark.parametrize("override,needle", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_config_value_on_the_command_line(world, tmp_path, capsys, override, needle):
    work = tmp_path / "run"
    code, err = run_main(TRAIN, train_argv(world, work, override), capsys)
    line = assert_one_error(code, err, needle)
    assert "command line" in line
    assert not work.exists()


@pytest.mark.parametrize(
    "override,needle",
    [("train.keep_checkpoints=-2", "train.keep_checkpoints"),
     ("optimizer.params.lr=abc", "optimizer.params.lr")],
)  # fmt: skip
def test_bad_config_value_on_an_existing_run_changes_nothing(world, capsys, override, needle):
    work = world["runs"]["large"]
    before = snapshot(work)
    code, err = run_main(TRAIN, train_argv(world, work, override), capsys)
    assert_one_error(code, err, needle)
    assert snapshot(work) == before


def test_bad_value_in_the_yaml_file_names_the_file(world, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    text = (
        (REPO / "configs" / "tiny_large.yaml").read_text().replace("ema_rate: 0.995", "ema_rate: x")
    )
    cfg.write_text(text)
    argv = train_argv(world, tmp_path / "run")
    argv[1] = str(cfg)
    code, err = run_main(TRAIN, argv, capsys)
    line = assert_one_error(code, err, str(cfg), "train.ema_rate")
    assert "command line" not in line
    assert not (tmp_path / "run").exists()


def test_yaml_syntax_error_names_the_line(world, tmp_path, capsys):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("model:\n  target: large\n  params: [1, 2\ntrain: {}\n")
    argv = train_argv(world, tmp_path / "run")
    argv[1] = str(cfg)
    code, err = run_main(TRAIN, argv, capsys)
    assert_one_error(code, err, str(cfg), "line ", "not valid YAML")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "extra,needle",
    [
        # explicit channels (auto ones would follow --num_defect)
        (
            ["--num_defect", "6", "model.params.in_channels=8", "model.params.out_channels=8"],
            "needs 10",
        ),
        (["--num_defect", "0"], "--num_defect"),  # the flag, as the user typed it
        (["--device", NO_CUDA_DEVICE], "--device"),
        (["--device", "tpu"], "not a device"),
        (["--resume", "/nonexistent/ckpt.pt"], "not found"),
    ],
    ids=["num_defect_6", "num_defect_0", "no_cuda", "unknown_device", "missing_resume"],
)
def test_bad_flags_of_a_fresh_run_create_nothing(world, tmp_path, capsys, extra, needle):
    work = tmp_path / "run"
    code, err = run_main(TRAIN, train_argv(world, work, *extra), capsys)
    assert_one_error(code, err, needle)
    assert not work.exists()


def test_truncated_resume_checkpoint_creates_nothing(world, tmp_path, capsys):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(Path(ckpt(world, "large")).read_bytes()[:5000])
    work = tmp_path / "run"
    code, err = run_main(TRAIN, train_argv(world, work, "--resume", str(bad)), capsys)
    assert_one_error(code, err, "truncated.pt")
    assert not work.exists()


def test_missing_dataset_creates_nothing(world, tmp_path, capsys):
    work = tmp_path / "run"
    argv = train_argv(world, work)
    argv[argv.index("--data_dir") + 1] = str(tmp_path / "no_data")
    code, err = run_main(TRAIN, argv, capsys)
    assert_one_error(code, err, "no_data")
    assert not work.exists()


# ------------------------------------------------------------------------------------------------
# train.py: folders that cannot be written


def test_work_dir_that_is_a_file(world, tmp_path, capsys):
    work = tmp_path / "run"
    work.write_text("mine")
    code, err = run_main(TRAIN, train_argv(world, work), capsys)
    assert_one_error(code, err, str(work), "is a file")
    assert work.read_text() == "mine"


def test_work_dir_below_a_file(world, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    code, err = run_main(TRAIN, train_argv(world, blocker / "run"), capsys)
    assert_one_error(code, err, str(blocker))
    assert blocker.read_text() == "mine"


def test_work_dir_that_cannot_be_created(world, capsys):
    work = Path("/proc/defect_gen_hostile_run")  # no one can create folders there, root neither
    code, err = run_main(TRAIN, train_argv(world, work), capsys)
    assert_one_error(code, err, str(work))
    assert not work.exists()


# ------------------------------------------------------------------------------------------------
# train.py: a run folder that protects itself


def _plant_lock(folder, pid, host):
    path = Path(folder) / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": host, "started": "x", "command": "test"}))
    return path


@pytest.mark.parametrize("host", ["here", "elsewhere"])
def test_second_training_into_a_locked_run_is_refused(world, capsys, host):
    work = world["runs"]["large"]
    lock = _plant_lock(work, 1, socket.gethostname() if host == "here" else "other-host")
    try:
        before = snapshot(work)
        code, err = run_main(TRAIN, train_argv(world, work), capsys)
        assert_one_error(code, err, "in use by process 1", LOCK_NAME)
        assert snapshot(work) == before
    finally:
        lock.unlink()


def test_lock_held_by_this_process_refuses_a_fresh_run_into_the_folder(world, tmp_path, capsys):
    work = tmp_path / "run"
    work.mkdir()
    with FolderLock(work, "--work_dir"):
        before = snapshot(work)
        code, err = run_main(TRAIN, train_argv(world, work), capsys)
        assert_one_error(code, err, f"in use by process {os.getpid()}")
        assert snapshot(work) == before
    assert not (work / LOCK_NAME).exists()


RESUME_CHANGES = [
    (["optimizer.params.lr=0.001"], "optimizer.params.lr"),
    (["optimizer.params.weight_decay=0.1"], "optimizer.params.weight_decay"),
    (["diffusion.params.schedule=linear"], "diffusion.params.schedule"),
    (["data.params.classes=[d,c,b,a]"], "data.params.classes"),
    (["train.ema_rate=0.5"], "train.ema_rate"),
    (["model.params.model_channels=64"], "model.params.model_channels"),
    (["model.params.model_channels=64", "--allow_config_change"], "model.params.model_channels"),
    (["train.iterations=1"], "past train.iterations=1"),
]


@pytest.mark.parametrize(
    "extra,needle", RESUME_CHANGES, ids=[" ".join(c[0]) for c in RESUME_CHANGES]
)
def test_resume_with_changed_training_settings_is_refused(world, capsys, extra, needle):
    work = world["runs"]["large"]
    before = snapshot(work)
    code, err = run_main(TRAIN, train_argv(world, work, *extra), capsys)
    assert_one_error(code, err, needle)
    assert snapshot(work) == before


def test_resume_with_another_dataset_is_refused(world, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(world["data"], other)
    work = world["runs"]["large"]
    before = snapshot(work)
    argv = train_argv(world, work)
    argv[argv.index("--data_dir") + 1] = str(other)
    code, err = run_main(TRAIN, argv, capsys)
    assert_one_error(code, err, "data.params.dir", "--allow_config_change")
    assert snapshot(work) == before


def test_small_config_on_a_large_run_is_refused_before_config_yaml_changes(world, capsys):
    work = world["runs"]["large"]
    before = snapshot(work)
    code, err = run_main(TRAIN, train_argv(world, work, config="tiny_small"), capsys)
    assert_one_error(code, err, "model")
    assert snapshot(work) == before


# ------------------------------------------------------------------------------------------------
# sample.py


def test_overwrite_refuses_files_the_tool_did_not_write(world, tmp_path, capsys):
    out = tmp_path / "s"
    shutil.copytree(world["samples"], out)
    (out / "images" / "holiday.png").write_bytes(b"not ours")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    code, err = run_main(
        SAMPLE, sample_argv(world["runs"], out, "--seed", "5", "--overwrite"), capsys
    )
    assert_one_error(code, err, "images/holiday.png", "notes.txt", "never deleted")
    assert snapshot(out) == before


def test_foreign_pngs_without_manifest_are_not_called_samples(world, tmp_path, capsys):
    out = tmp_path / "s"
    (out / "images").mkdir(parents=True)
    (out / "images" / "photo.png").write_bytes(b"mine")
    before = snapshot(out)
    code, err = run_main(SAMPLE, sample_argv(world["runs"], out), capsys)
    line = assert_one_error(code, err, "photo.png", "did not write")
    assert "--overwrite" not in line
    assert snapshot(out) == before


SAMPLE_CASES = [
    (["--seed", "1"], "seed 0 there vs 1 now"),
    (["--num_samples", "0"], "--num_samples"),
    (["--device", NO_CUDA_DEVICE], "--device"),
    (["--device", "tpu"], "not a device"),
    (["--num_defect", "3"], "--num_defect 3"),
    (["--step_inference", "5000"], "5000"),
    (["--timestep_respacing", "abc"], "abc"),
]


@pytest.mark.parametrize("extra,needle", SAMPLE_CASES, ids=[" ".join(c[0]) for c in SAMPLE_CASES])
def test_bad_sample_flags_leave_the_folder_untouched(world, capsys, extra, needle):
    out = world["samples"]
    before = snapshot(out)
    code, err = run_main(SAMPLE, sample_argv(world["runs"], out, *extra), capsys)
    assert_one_error(code, err, needle)
    assert snapshot(out) == before


def test_swapped_checkpoints_create_no_sample_folder(world, tmp_path, capsys):
    runs = {"large": world["runs"]["small"], "small": world["runs"]["large"]}
    out = tmp_path / "s"
    code, err = run_main(SAMPLE, sample_argv(runs, out), capsys)
    assert_one_error(code, err, "--large_recep")
    assert not out.exists()


def test_corrupt_manifest_is_refused_without_overwrite(world, tmp_path, capsys):
    out = tmp_path / "s"
    shutil.copytree(world["samples"], out)
    (out / "manifest.json").write_text("{not json")
    before = snapshot(out)
    code, err = run_main(SAMPLE, sample_argv(world["runs"], out), capsys)
    assert_one_error(code, err, "manifest.json")
    assert snapshot(out) == before


def test_sample_dir_that_is_a_file(world, tmp_path, capsys):
    out = tmp_path / "s"
    out.write_text("mine")
    code, err = run_main(SAMPLE, sample_argv(world["runs"], out), capsys)
    assert_one_error(code, err, "--sample_dir", "is a file")
    assert out.read_text() == "mine"


def test_sample_dir_below_a_file(world, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    code, err = run_main(SAMPLE, sample_argv(world["runs"], blocker / "s"), capsys)
    assert_one_error(code, err, str(blocker))
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("where", ["folder", "below_file"])
def test_call_log_that_cannot_be_written(world, tmp_path, capsys, where):
    out = tmp_path / "s"
    if where == "folder":
        log = tmp_path / "log"
        log.mkdir()
    else:
        (tmp_path / "blocker").write_text("mine")
        log = tmp_path / "blocker" / "calls.jsonl"
    before = snapshot(tmp_path)
    code, err = run_main(SAMPLE, sample_argv(world["runs"], out, "--call_log", str(log)), capsys)
    assert_one_error(code, err, "--call_log")
    assert snapshot(tmp_path) == before


def test_locked_sample_folder_is_refused(world, capsys):
    out = world["samples"]
    lock = _plant_lock(out, 1, socket.gethostname())
    try:
        before = snapshot(out)
        code, err = run_main(SAMPLE, sample_argv(world["runs"], out), capsys)
        assert_one_error(code, err, "in use by process 1")
        assert snapshot(out) == before
    finally:
        lock.unlink()


# ------------------------------------------------------------------------------------------------
# prepare_data.py


def _stray_dataset(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    mask_path = sorted((data / "converted_ground_truth").rglob("*.png"))[0]
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[0, 0] = 7
    Image.fromarray(mask).save(mask_path)
    return data, mask_path


def test_stray_mask_value_is_a_problem_not_k(world, tmp_path, capsys):
    data, mask_path = _stray_dataset(world, tmp_path)
    before = snapshot(data)
    code, err = run_main(PREPARE, [str(data)], capsys)
    assert_one_error(code, err, str(mask_path), "mask value 7 far above")
    out = capsys.readouterr().out
    assert "num_defect: 7" not in out
    assert snapshot(data) == before


@pytest.mark.parametrize(
    "argv,needle",
    [(["{missing}"], "missing"), (["{data}", "--num_defect", "0"], "num_defect"),
     (["{data}", "--num_image_train", "0"], "num_image_train"),
     (["{data}", "--classes", "a,a"], "more than once")],
    ids=["missing_folder", "num_defect_0", "num_image_train_0", "repeated_class"],
)  # fmt: skip
def test_prepare_data_bad_arguments(world, tmp_path, capsys, argv, needle):
    argv = [a.format(missing=tmp_path / "missing", data=world["data"]) for a in argv]
    before = snapshot(world["data"])
    code, err = run_main(PREPARE, argv, capsys)
    assert_one_error(code, err, needle)
    assert snapshot(world["data"]) == before


# ------------------------------------------------------------------------------------------------
# evaluate.py: refused before any training, and no output folder created

EVAL_CASES = [
    (["--resolution", "4"], "--resolution"),
    (["--seeds", "0"], "--seeds"),
    (["--iterations", "0"], "--iterations"),
    (["--batch_size", "0"], "--batch_size"),
    (["--modes", "x"], "--modes"),
    (["--modes", "d"], "--synthetic"),
    (["--synthetic", "{tmp}/no_synth"], "no_synth"),
    (["--synthetic_ratio", "0"], "--synthetic_ratio"),
]


@pytest.mark.parametrize("extra,needle", EVAL_CASES, ids=[" ".join(c[0]) for c in EVAL_CASES])
def test_evaluate_bad_arguments_create_nothing(world, tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    extra = [e.format(tmp=tmp_path) for e in extra]
    argv = ["--data_dir", str(world["data"]), "--out", str(out), "--device", "cpu", *extra]
    code, err = run_main(EVALUATE, argv, capsys)
    assert_one_error(code, err, needle)
    assert not out.exists()


@pytest.mark.parametrize("where", ["missing_data", "out_is_file"])
def test_evaluate_bad_folders(world, tmp_path, capsys, where):
    out = tmp_path / "out"
    data = world["data"]
    if where == "missing_data":
        data = tmp_path / "no_data"
    else:
        out.write_text("mine")
    argv = ["--data_dir", str(data), "--out", str(out), "--device", "cpu", "--iterations", "1"]
    before = snapshot(tmp_path)
    code, err = run_main(EVALUATE, argv, capsys)
    assert_one_error(code, err, "no_data" if where == "missing_data" else "is a file")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# Real processes: the same promises hold for the scripts as users start them


def _run(script, argv):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(REPO / "scripts" / f"{script}.py"), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_process_keep_checkpoints_negative_deletes_nothing(world):
    work = world["runs"]["large"]
    before = snapshot(work)
    proc = _run("train", train_argv(world, work, "train.keep_checkpoints=-2"))
    assert_one_error(proc.returncode, proc.stderr.splitlines(), "train.keep_checkpoints")
    assert snapshot(work) == before


def test_process_training_into_a_folder_another_run_holds(world, tmp_path):
    work = tmp_path / "run"
    work.mkdir()
    with FolderLock(work, "--work_dir"):  # this test process plays the first training
        proc = _run("train", train_argv(world, work))
    assert_one_error(proc.returncode, proc.stderr.splitlines(), "in use by process")
    assert sorted(p.name for p in work.iterdir()) == []


def test_process_no_cuda_device_for_sample(world, tmp_path):
    out = tmp_path / "s"
    proc = _run("sample", sample_argv(world["runs"], out, "--device", NO_CUDA_DEVICE))
    assert_one_error(proc.returncode, proc.stderr.splitlines(), "--device")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# What the tool does instead: changes applied on request, stale locks and litter cleared, warnings


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_allowed_change_is_applied_stale_lock_and_temp_files_cleared(world, tmp_path, capsys):
    work = tmp_path / "run"
    shutil.copytree(world["runs"]["large"], work)
    _plant_lock(work, _dead_pid(), socket.gethostname())  # a run killed without cleaning up
    litter = work / "checkpoints" / f".ckpt_000004.pt.tmp{_dead_pid()}"
    litter.write_bytes(b"half a checkpoint")
    mine = work / "checkpoints" / ".ckpt_notes.tmp"  # not our pattern: stays
    mine.write_text("mine")
    argv = train_argv(world, work, "optimizer.params.lr=0.002", "--allow_config_change")
    code, err = run_main(TRAIN, argv, capsys)
    assert code == 0, err
    state = torch.load(work / "checkpoints" / "ckpt_000004.pt", weights_only=False)
    assert state["step"] == 4
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [0.002]
    assert state["config"]["optimizer"]["params"]["lr"] == 0.002
    assert "lr: 0.002" in (work / "config.yaml").read_text()
    assert not litter.exists() and mine.read_text() == "mine"
    assert not (work / LOCK_NAME).exists()


def test_iterations_equal_to_the_resumed_step_warns_and_writes_nothing(world, capsys):
    work = world["runs"]["large"]
    before = snapshot(work)
    code, err = run_main(TRAIN, train_argv(world, work)[:-1] + ["train.iterations=2"], capsys)
    assert code in (0, None)
    assert any(line.startswith("warning:") and "nothing to train" in line for line in err), err
    assert snapshot(work) == before


def test_num_defect_above_the_classes_found_warns(world, tmp_path, capsys):
    code, err = run_main(PREPARE, [str(world["data"]), "--num_defect", "6"], capsys)
    assert code == 0
    warnings = [line for line in err if line.startswith("warning:")]
    assert len(warnings) == 1 and "5=class_5, 6=class_6" in warnings[0], err


def test_training_warns_about_classes_no_mask_holds(world, tmp_path, capsys):
    work = tmp_path / "run"
    argv = train_argv(world, work, "model.params.in_channels=10", "model.params.out_channels=10",
                      "train.iterations=1", "--num_defect", "6")  # fmt: skip
    code, err = run_main(TRAIN, argv, capsys)
    assert code in (0, None), err
    warnings = [line for line in err if line.startswith("warning:")]
    assert len(warnings) == 1 and "5=class_5, 6=class_6" in warnings[0], err
