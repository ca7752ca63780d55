"""ai4lab.core.session_envs: an environment on top of the session environment, built once, with progress."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ai4lab.core.envs import MARKER, EnvBuildError
from ai4lab.core.session_envs import BASE_PTH, SessionEnvBuild, site_packages
from ai4lab.core.settings import SessionEnvironment, Settings


def build(tmp_path: Path, **spec: object) -> SessionEnvBuild:
    settings = Settings(state_dir=tmp_path / "state", envs_dir=tmp_path / "envs")
    env = SessionEnvironment(**{"display_name": "Tiny", **spec})  # type: ignore[arg-type]
    return SessionEnvBuild(settings, "tiny", env)


def test_base_needs_no_build(tmp_path: Path) -> None:
    b = build(tmp_path)
    assert not b.needed and b.ensure() is None and b.path() is None


def test_builds_once_with_progress_kernel_and_the_session_packages(tmp_path: Path) -> None:
    b = build(tmp_path, requirements=["six==1.17.0"], check="import six; assert six.__version__ == '1.17.0'")
    said: list[str] = []
    assert b.path() is None
    env = b.ensure(said.append)
    assert env is not None and b.path() == env
    assert said[0] == "Building the Tiny environment (first use): six==1.17.0"
    assert "Tiny: installed 1 package: six" in said
    assert any(m.startswith("Tiny: resolved ") for m in said)
    assert said[-1] == "Tiny environment ready: 1 package"
    marker = json.loads((env / MARKER).read_text())
    assert marker["installed"] == ["six==1.17.0"]
    # the environment's python sees its own package and the session environment's (kernel, MLflow, client)
    out = subprocess.run(
        [str(env / "bin" / "python"), "-c", "import six, ipykernel, mlflow, ai4lab.client; print(six.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.startswith(str(env))
    assert (site_packages(env) / BASE_PTH).is_file()
    spec = json.loads((env / "share/jupyter/kernels/python3/kernel.json").read_text())
    assert spec["argv"][0] == str(env / "bin" / "python") and spec["display_name"] == "Python 3 (Tiny)"
    # cached: a second call builds nothing
    again: list[str] = []
    assert b.ensure(again.append) == env and again == []
    assert json.loads((env / MARKER).read_text())["created"] == marker["created"]


def test_failed_build_says_why_and_keeps_nothing(tmp_path: Path) -> None:
    b = build(tmp_path, requirements=["six==1.17.0"], check="import no_such_module_ai4lab")
    with pytest.raises(EnvBuildError, match="no_such_module_ai4lab") as e:
        b.ensure()
    assert e.value.step.startswith("check:")
    assert not b.folder().exists() and b.path() is None
    bad = build(tmp_path, requirements=["ai4lab-no-such-package-anywhere==9.9.9"])
    with pytest.raises(EnvBuildError, match="ai4lab-no-such-package-anywhere") as e:
        bad.ensure()
    assert e.value.step == "uv pip install"
    assert not bad.folder().exists()


def test_a_changed_requirement_is_another_environment(tmp_path: Path) -> None:
    assert build(tmp_path, requirements=["six==1.17.0"]).folder() != build(tmp_path, requirements=["six"]).folder()
    assert build(tmp_path, requirements=["six"], description="a").folder() == build(
        tmp_path, requirements=["six"], description="b").folder()


def test_a_second_start_waits_for_the_build_under_way(tmp_path: Path) -> None:
    import threading

    b = build(tmp_path, requirements=["six==1.17.0"])
    first: list[str] = []
    started = threading.Event()

    def build_first() -> None:
        b.ensure(lambda m: (first.append(m), started.set()))

    t = threading.Thread(target=build_first)
    t.start()
    assert started.wait(60)
    second: list[str] = []
    env = b.ensure(second.append)  # the same environment, by another start: it waits and reuses it
    t.join(120)
    assert env == b.path() and first[-1] == "Tiny environment ready: 1 package"
    assert second == ["Waiting for the Tiny environment: another session is building it",
                      "Tiny environment ready (built by another session)"]


def test_index_urls_reach_the_installer(tmp_path: Path) -> None:
    """An environment's own index is asked first (here one that does not answer: the build says so)."""
    b = build(tmp_path, requirements=["six==1.17.0"], index_urls=["http://127.0.0.1:9/simple"])
    assert b.folder() != build(tmp_path, requirements=["six==1.17.0"]).folder()
    with pytest.raises(EnvBuildError, match="127.0.0.1:9") as e:
        b.ensure()
    assert e.value.step == "uv pip install" and not b.folder().exists()
