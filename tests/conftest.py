"""Shared test fixtures: the reference data in ../shared, and tiny model configs."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

# One thread: the tiny models of the tests gain nothing from more, and lose much when cores are shared.
torch.set_num_threads(1)


def load_script(name, folder="scripts"):
    """Give FOLDER/NAME.py (scripts/ or benchmarks/) loaded as a fresh module (main() runs here)."""
    spec = importlib.util.spec_from_file_location(
        f"_{folder}_{name}", REPO / folder / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_command(main, argv):
    """Run a command's `main` in-process as its __main__ does (through run_cli); give the exit code."""
    from defect_gen.commands.cli import run_cli

    try:
        return run_cli(main, argv)
    except SystemExit as exc:
        return exc.code


def run_error(main, argv, capsys):
    """Run a command's `main` in-process as its __main__ does; give (exit code, stderr lines)."""
    from defect_gen.commands.cli import run_cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_cli(main, argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return info.value.code, err


def assert_one_error(code, err, needles=()):
    """A user error as the commands report it: exit code 2, one "error: " line holding every needle,
    no traceback."""
    assert code == 2
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


@pytest.fixture
def one_thread():
    """Torch on one thread: tiny networks gain nothing from threads, and on a busy machine spinning
    threads cost 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared_path(*parts):
    """Give a path inside ../shared, skipping the test when that folder is absent (not a CI condition)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(scope="session")
def official_unets_tiny():
    return torch.load(shared_path("reference", "official_unets_tiny.pt"), weights_only=False)


@pytest.fixture(scope="session")
def official_diffusion_reference():
    return torch.load(
        shared_path("reference", "official_diffusion_reference.pt"), weights_only=False
    )
