"""
The option space (issue 21): any value of any numeric option of the four commands, or of any numeric
config key, alone or several at once (NaN, infinities, huge, negative, zero included), either gets
through every check or ends in exactly one `error:` line with exit code 2 and no traceback; and a
refused command changes no existing folder nor creates a new one.

Each command runs its real main() in-process up to the step after its last check, which is replaced
by a stub raising `Reached` (training builds no model, sampling generates nothing, evaluation trains
no segmenter), so that a fixed, derandomised example budget runs in seconds.
"""

import contextlib
import io
import shutil
import traceback
from pathlib import Path

import pytest
from conftest import load_script

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from defect_gen.commands import evaluate as evaluate_cmd  # noqa: E402
from defect_gen.commands import sample as sample_cmd  # noqa: E402
from defect_gen.commands import train as train_cmd  # noqa: E402
from defect_gen.commands.cli import run_cli  # noqa: E402
from defect_gen.data.toy import write_dataset  # noqa: E402
from defect_gen.limits import OPTION_RULES  # noqa: E402
from defect_gen.training.schema import RULES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RES = 16
TRAIN, SAMPLE, PREPARE, EVALUATE = (
    load_script(n) for n in ("train", "sample", "prepare_data", "evaluate")
)
SETTINGS = dict(
    deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip


class Reached(Exception):
    """Raised by the stub that replaces a command's first step after its checks."""


def _reached(*args, **kwargs):
    raise Reached


# Numbers a user may type: any integer or float, and the edges that broke commands before.
EDGE_INTS = [0, 1, -1, 2, 3, 17, 255, 256, 2**31 - 1, 2**31, 2**63, 10**12, 10**20, -(10**20)]
EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 5.0, 1e-300, 1e300, float("nan"), float("inf"), -float("inf")]
INTS = st.one_of(st.sampled_from(EDGE_INTS), st.integers())
FLOATS = st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(), st.integers(-(10**6), 10**6))


def _text(value, yaml=False):
    """Give a value as typed on the command line (YAML spells NaN and infinities .nan, .inf)."""
    if isinstance(value, float) and yaml and value != value:
        return ".nan"
    if isinstance(value, float) and yaml and abs(value) == float("inf"):
        return "-.inf" if value < 0 else ".inf"
    return repr(value) if isinstance(value, float) else str(value)


def _numbers(rule):
    return FLOATS if rule.kind == "float" else INTS


def option_values(command, draw, max_options=3):
    """Draw {flag: text} for up to `max_options` numeric options of `command`."""
    # numbers only: bools and argparse `choices` are refused by argparse itself
    rules = {n: r for n, r in OPTION_RULES[command].items() if r.kind in ("int", "float")}
    names = draw(st.lists(st.sampled_from(sorted(rules)), min_size=1, max_size=max_options, unique=True))
    return {f"--{n}": _text(draw(_numbers(rules[n]))) for n in names}


def _flags(options):
    """Give `--flag=value` arguments (the form argparse takes for values such as -inf or -1e+300)."""
    return [f"{flag}={value}" for flag, value in options.items()]


def run(main, argv):
    """Run `main` as its script does; give ("reached" | exit code, stderr lines)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = run_cli(main, argv) or 0
        except Reached:
            code = "reached"
        except SystemExit as exc:
            code = exc.code
        except Exception:  # a traceback: the property fails with it
            code = "traceback"
            err.write(traceback.format_exc())
    return code, [line for line in err.getvalue().splitlines() if line.strip()]


def snapshot(folder):
    folder = Path(folder)
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def check_outcome(code, err, argv, folders_before):
    """Works, or one `error:` line with exit code 2 and every folder as it was."""
    assert code != "traceback", "\n".join(err)
    if code in ("reached", 0):
        return True
    errors = [line for line in err if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1, (argv, code, err)
    assert not any("Traceback" in line for line in err), err
    for folder, before in folders_before.items():
        assert snapshot(folder) == before, (argv, errors[0], folder)
    return False


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A toy dataset, two tiny checkpoints, an existing sample folder and run folder, the stubs."""
    root = tmp_path_factory.mktemp("option_space")
    write_dataset(root / "data", layout="mvtec", num_per_type=2, size=RES, seed=0)
    common = [
        "--data_dir", str(root / "data"), "train.iterations=2", "train.max_images=0",
        f"data.params.resolution={RES}", "data.params.num_image_train=2", "data.bs_per_gpu=2",
    ]  # fmt: skip
    for kind in ("large", "small"):
        TRAIN.main(
            ["--config", str(REPO / f"configs/tiny_{kind}.yaml"), "--work_dir", str(root / kind)]
            + common
        )
    w = {"root": root, "data": root / "data", "common": common}
    w["sample_base"] = [
        "--large_recep", str(root / "large"), "--small_recep", str(root / "small"),
        "--step_inference", "400", "--timestep_respacing", "2", "--device", "cpu", "--no_progress",
    ]  # fmt: skip
    SAMPLE.main(w["sample_base"] + ["--sample_dir", str(root / "samples"), "--num_samples", "2"])
    shutil.copytree(root / "samples", root / "samples_template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_cmd, "build_model", _reached)
        mp.setattr(sample_cmd, "_generate_missing", _reached)
        mp.setattr(evaluate_cmd, "run_evaluation", _reached)
        mp.setattr(evaluate_cmd.tune, "run_tuning", _reached)
        yield w


def _restore(folder, template):
    shutil.rmtree(folder, ignore_errors=True)
    if template is not None:
        shutil.copytree(template, folder)


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_sample_options(world, data):
    root = world["root"]
    existing = data.draw(st.booleans())
    out = root / ("samples" if existing else "new_samples")
    extra = option_values("sample", data.draw)
    mode = data.draw(st.sampled_from(["joint", "inpaint"]))
    if mode == "joint":
        extra.pop("--band", None), extra.pop("--resample", None)
    keep = "defect" if "--max_candidates" in extra else "all"
    argv = world["sample_base"] + ["--sample_dir", str(out), "--mode", mode, "--keep", keep]
    argv += ["--sampler", data.draw(st.sampled_from(["cold", "ddim"]))]
    argv += _flags(extra)
    before = {out: snapshot(out)}
    code, err = run(SAMPLE.main, argv)
    if check_outcome(code, err, argv, before):
        _restore(out, root / "samples_template" if existing else None)


CONFIG_NUMBERS = {
    key: rule
    for key, rule in RULES.items()
    if rule.kind in ("int", "float") and not key.startswith("model.params.num_classes")
}


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_train_options_and_config_numbers(world, data):
    root = world["root"]
    existing = data.draw(st.booleans())
    work = root / ("large" if existing else "new_run")
    keys = data.draw(st.lists(st.sampled_from(sorted(CONFIG_NUMBERS)), max_size=3, unique=True))
    overrides = [
        f"{k}={_text(data.draw(_numbers(CONFIG_NUMBERS[k])), yaml=True)}" for k in keys
    ]
    extra = option_values("train", data.draw, max_options=1) if data.draw(st.booleans()) else {}
    argv = ["--config", str(REPO / "configs/tiny_large.yaml"), "--work_dir", str(work)]
    argv += world["common"] + overrides + _flags(extra)
    before = {work: snapshot(work)}
    code, err = run(TRAIN.main, argv)
    if check_outcome(code, err, argv, before) and not existing:
        shutil.rmtree(work, ignore_errors=True)


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_evaluate_options(world, data):
    out = world["root"] / "eval_out"
    extra = option_values("evaluate", data.draw, max_options=4)
    if data.draw(st.booleans()):
        extra["--synthetic_ratio"] = _text(data.draw(FLOATS))
    argv = ["--data_dir", str(world["data"]), "--out", str(out)]
    argv += _flags(extra)
    code, err = run(EVALUATE.main, argv)
    check_outcome(code, err, argv, {out: None})
    assert not out.exists()


@settings(max_examples=20, **SETTINGS)
@given(data=st.data())
def test_prepare_data_options(world, data):
    out = world["root"] / "official_out"
    extra = option_values("prepare_data", data.draw, max_options=2)
    argv = [str(world["data"]), "--write_official", str(out)]
    argv += _flags(extra)
    code, err = run(PREPARE.main, argv)
    assert code != "traceback", "\n".join(err)
    assert code in (0, 2) and sum(line.startswith("error: ") for line in err) <= 1, (argv, err)
    if code != 0:  # a refused or problem-reporting run writes nothing
        assert not out.exists(), argv
    shutil.rmtree(out, ignore_errors=True)
