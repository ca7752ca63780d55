"""Each bundled module: valid AI4OS metadata, installable in its own environment, own tests pass there."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from ai4lab.core.envs import MARKER, env_bin

from .helpers import MODULES, MODULES_DIR

pytestmark = pytest.mark.xdist_group("modules")


@pytest.mark.parametrize("name", MODULES)
def test_metadata_is_valid_ai4os_v2(name: str) -> None:
    cli = Path(sys.executable).parent / "ai4-metadata"
    path = MODULES_DIR / name / "ai4-metadata.yml"
    out = subprocess.run([cli, "validate", "--metadata-version", "2.3.0", path], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", MODULES)
def test_package_layout_follows_the_ai4os_template(name: str) -> None:
    """Folder name = distribution name = DEEPaaS entry point; a Dockerfile serving deepaas on 5000."""
    root = MODULES_DIR / name
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] == name
    assert any(d.startswith("deepaas") for d in project["dependencies"])
    import_name = name.replace("-", "_")
    assert project["entry-points"]["deepaas.v2.model"] == {name: f"{import_name}.api"}
    assert "pytest" in " ".join(project["optional-dependencies"]["test"])
    dockerfile = (root / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "EXPOSE 5000" in dockerfile
    assert '"deepaas-run", "--listen-ip", "0.0.0.0", "--listen-port", "5000"' in dockerfile
    assert not list(root.rglob("*.joblib")), "weights are trained at first use, not committed"


@pytest.mark.parametrize("name", MODULES)
def test_env_holds_the_module_and_its_old_pins(name: str, module_env: Callable[[str], Path]) -> None:
    env = module_env(name)
    assert (env / MARKER).is_file() and env_bin(env, "deepaas-run").is_file()
    code = (
        "import importlib.metadata as m, sys; "
        "print(m.version('deepaas'), m.version('webargs'), m.version('marshmallow'), m.version('" + name + "'), "
        "sys.version_info[:2] == " + repr(tuple(sys.version_info[:2])) + ")"
    )
    out = subprocess.run([env_bin(env, "python"), "-c", code], capture_output=True, text=True, check=True).stdout.split()
    deepaas, webargs, marshmallow, version, same_python = out
    assert tuple(int(x) for x in deepaas.split(".")[:2]) >= (2, 5)
    assert int(webargs.split(".")[0]) < 6 and marshmallow.startswith("3.")  # pins the platform cannot share
    assert version == "0.1.0" and same_python == "True"


@pytest.mark.parametrize("name", MODULES)
def test_module_own_tests_pass_in_its_env(name: str, module_env: Callable[[str], Path], tmp_path: Path) -> None:
    env = module_env(name)
    # cwd outside the sources: the tests must run against the installed package
    out = subprocess.run(
        [env_bin(env, "python"), "-m", "pytest", str(MODULES_DIR / name / "tests"), "-q", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "pytest")],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout
