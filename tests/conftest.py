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


def load_script(name):
    """Give scripts/NAME.py loaded as a fresh module (its main() runs in this process)."""
    spec = importlib.util.spec_from_file_location(
        f"_script_{name}", REPO / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
