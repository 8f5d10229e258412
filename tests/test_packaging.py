"""Packaging: every subpackage is installed, and each console command runs its script's main."""

import importlib
import os
import subprocess
import sys

import pytest
from conftest import REPO
from setuptools import find_packages

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_package_discovery_finds_every_subpackage():
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    installed = set(find_packages(str(REPO), include=find["include"]))
    inits = (REPO / "defect_gen").rglob("__init__.py")
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in inits}
    assert "defect_gen.evaluation" in on_disk and "defect_gen.commands" in on_disk
    assert installed == on_disk


@pytest.mark.parametrize("name", ["train", "sample", "evaluate", "prepare"])
def test_console_commands_point_at_the_scripts_main(name):
    target = _pyproject()["project"]["scripts"][f"defect-gen-{name}"]
    module_name, func = target.split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, func))
    # The script in scripts/ is a thin wrapper around the same main.
    script = "prepare_data" if name == "prepare" else name
    wrapper = (REPO / "scripts" / f"{script}.py").read_text()
    assert f"from {module_name} import main" in wrapper
    # The entry point runs: --help exits 0 and names the command's options.
    code = (
        f"import sys; sys.argv = ['defect-gen-{name}', '--help']; "
        f"import {module_name} as m; m.{func}()"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: defect-gen-{name}")
