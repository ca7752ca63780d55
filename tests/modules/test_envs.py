"""ai4lab.core.envs: one cached virtual environment per catalog item, built the AI4OS way.

Uses tiny real packages (built by uv with setuptools, or by an in-tree build
backend for the failure case) in a temporary cache root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ai4lab.core.runtime import default_runtime_dir, default_user_python, python_version
from ai4lab.core.envs import (MARKER, EnvBuildError, default_cache_root, ensure_env, env_bin, env_repo, installs_editable,
                         source_hash)

pytestmark = pytest.mark.xdist_group("modules")


@pytest.fixture
def tmp_path(reachable_tmp: Path) -> Path:
    """Environments are built by user accounts (nobody) and run by them: their cache must be reachable."""
    return reachable_tmp


def make_package(root: Path, value: str = "one", extras: dict[str, list[str]] | None = None) -> Path:
    """A minimal installable package ``tinymod`` whose ``VALUE`` tells builds apart."""
    root.mkdir(parents=True, exist_ok=True)
    extra_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (extras or {}).items())
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = ["setuptools>=77"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "tinymod"
            version = "0.1.0"

            [project.scripts]
            tinymod = "tinymod:main"

            [project.optional-dependencies]
            """
        )
        + extra_lines
        + '\n[tool.setuptools]\npackages = ["tinymod"]\n'
    )
    (root / "tinymod").mkdir(exist_ok=True)
    (root / "tinymod" / "__init__.py").write_text(f"VALUE = {value!r}\n\ndef main():\n    print(VALUE)\n")
    return root


def run_value(env: Path) -> str:
    """What the installed package says, through its console script (checks relocated scripts work)."""
    return subprocess.run([env_bin(env, "tinymod")], capture_output=True, text=True, check=True).stdout.strip()


def test_builds_once_then_reuses(tmp_path: Path) -> None:
    item = make_package(tmp_path / "tiny")
    cache = tmp_path / "envs"
    env = ensure_env(item, cache)
    assert env.parent == cache and env.name.startswith("tiny-")
    assert run_value(env) == "one"
    marker = json.loads((env / MARKER).read_text())
    assert marker["hash"] == source_hash(item) and marker["python"] == python_version(str(default_user_python())).split()[0]
    assert any(p.startswith("tinymod") for p in marker["packages"])
    # as the AI4OS template's Dockerfile: an editable install of the environment's copy of the repository
    out = subprocess.run(
        [env_bin(env, "python"), "-c", "import tinymod; print(tinymod.__file__)"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(env_repo(env) / "tinymod" / "__init__.py")
    assert env_repo(env) == env / "srv" / "tinymod" and marker["editable"] is True
    t = time.monotonic()
    assert ensure_env(item, cache) == env
    assert time.monotonic() - t < 0.5
    # no scratch folders left, and the source tree was not written to (no build/, *.egg-info)
    assert sorted(p.name for p in cache.iterdir()) == sorted([env.name, f".{env.name}.lock"])
    assert sorted(p.name for p in item.rglob("*")) == ["__init__.py", "pyproject.toml", "tinymod"]


def test_requirements_first_then_a_regular_install_when_the_dockerfile_says_so(tmp_path: Path) -> None:
    """``requirements.txt`` is installed before the package, and ``pip install .`` in the Dockerfile is honoured."""
    item = make_package(tmp_path / "tiny")
    make_package(item / "vendor" / "helper", value="helper")
    helper = item / "vendor" / "helper"
    (helper / "pyproject.toml").write_text((helper / "pyproject.toml").read_text().replace('"tinymod"', '"helperpkg"')
                                           .replace("tinymod =", "helperpkg =").replace("tinymod:", "helperpkg:"))
    (helper / "tinymod").rename(helper / "helperpkg")
    (item / "requirements.txt").write_text("./vendor/helper\n")
    (item / "Dockerfile").write_text('FROM python:3.11\nWORKDIR /srv\nCOPY . tiny\nRUN cd tiny && \\\n'
                                     '    pip3 install --no-cache-dir ".[extra]"\n')
    assert not installs_editable(item)
    env = ensure_env(item, tmp_path / "envs")
    marker = json.loads((env / MARKER).read_text())
    assert marker["editable"] is False and any(p.startswith("helperpkg") for p in marker["packages"])
    out = subprocess.run([env_bin(env, "python"), "-c", "import tinymod; print(tinymod.__file__)"],
                         capture_output=True, text=True, check=True).stdout
    assert "site-packages" in out
    (item / "Dockerfile").write_text("FROM x\nRUN git clone https://example.org/tiny && cd tiny && pip install -e .\n")
    assert installs_editable(item)


def test_changed_sources_get_a_new_env_with_the_new_code(tmp_path: Path) -> None:
    item = make_package(tmp_path / "tiny")
    cache = tmp_path / "envs"
    first = ensure_env(item, cache)
    # touching files (a fresh checkout) or leaving caches around changes nothing
    for p in item.rglob("*"):
        os.utime(p, (1, 1))
    (item / "tinymod" / "__pycache__").mkdir()
    (item / "tinymod" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    assert ensure_env(item, cache) == first
    make_package(item, value="two")
    second = ensure_env(item, cache)
    assert second != first
    # the new env really has the new sources (uv must not reuse a wheel built from the old ones)
    assert run_value(second) == "two" and run_value(first) == "one"


def test_extras_are_part_of_the_key(tmp_path: Path) -> None:
    item = make_package(tmp_path / "tiny", extras={"test": []})
    cache = tmp_path / "envs"
    plain, with_test = ensure_env(item, cache), ensure_env(item, cache, extras=["test"])
    assert plain != with_test
    assert json.loads((with_test / MARKER).read_text())["extras"] == ["test"]
    with pytest.raises(ValueError, match="invalid extra"):
        ensure_env(item, cache, extras=["x]; rm -rf /"])


def test_concurrent_callers_share_one_build(tmp_path: Path) -> None:
    item = make_package(tmp_path / "tiny")
    cache = tmp_path / "envs"
    code = "import sys; from pathlib import Path; from ai4lab.core.envs import ensure_env; print(ensure_env(Path(sys.argv[1]), Path(sys.argv[2])))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(item), str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    env = Path(paths.pop())
    created = json.loads((env / MARKER).read_text())["created"]
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [env.name]
    assert run_value(env) == "one" and created


def test_failed_build_raises_with_uv_output_and_leaves_nothing(tmp_path: Path) -> None:
    """An in-tree build backend that fails: no registry needed to provoke a real build error."""
    item = tmp_path / "broken"
    item.mkdir()
    (item / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "failing_backend"\nbackend-path = ["."]\n\n'
        '[project]\nname = "broken"\nversion = "0.1.0"\n'
    )
    (item / "failing_backend.py").write_text(
        "def _fail(*a, **k):\n    raise RuntimeError('ai4lab-test: the build backend exploded')\n\n"
        "build_wheel = prepare_metadata_for_build_wheel = get_requires_for_build_wheel = _fail\n"
        "build_editable = prepare_metadata_for_build_editable = get_requires_for_build_editable = _fail\n"
    )
    cache = tmp_path / "envs"
    with pytest.raises(EnvBuildError) as err:
        ensure_env(item, cache)
    assert err.value.step == "pip install -e ." and err.value.returncode not in (0, None)
    assert "the build backend exploded" in err.value.output_tail
    assert "the build backend exploded" in str(err.value)
    assert [p for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_bad_items_and_missing_executables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError):
        ensure_env(tmp_path / "missing", tmp_path / "envs")
    (tmp_path / "not-a-package").mkdir()
    with pytest.raises(ValueError, match="not a Python package"):
        ensure_env(tmp_path / "not-a-package", tmp_path / "envs")
    with pytest.raises(FileNotFoundError, match="deepaas-run"):
        env_bin(tmp_path, "deepaas-run")
    monkeypatch.setenv("AI4LAB_ENVS_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("AI4LAB_ENVS_DIR")
    assert default_cache_root() == default_runtime_dir() / "envs"
