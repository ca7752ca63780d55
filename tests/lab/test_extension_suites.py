"""The JupyterLab extension's own suites, so that `make test` fails when they fail:
its TypeScript unit tests (vitest, with the node_modules the install step built) and
its server-extension tests (pytest-jupyter, in their own pytest process because that
plugin takes over the event loop of every test it sees)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parents[2] / "extensions" / "jupyterlab-ai4lab"


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=EXT, capture_output=True, text=True, timeout=600)


def test_typescript_unit_tests() -> None:
    vitest = EXT / "node_modules" / ".bin" / "vitest"
    if not vitest.exists():
        pytest.fail("the extension's node_modules are missing: run scripts/install.sh test")
    r = run([shutil.which("node") or "node", str(vitest), "run"])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout


def test_server_extension_with_pytest_jupyter() -> None:
    r = run([sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", "-p", "no:xdist", "-p", "no:cacheprovider", "tests"])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout


def test_installed_and_enabled_in_the_platform_venv() -> None:
    """Sessions run JupyterLab from this venv: the extension must be there, enabled."""
    bin_dir = Path(sys.executable).parent
    labext = subprocess.run([str(bin_dir / "jupyter"), "labextension", "list"], capture_output=True, text=True)
    assert "jupyterlab-ai4lab" in labext.stdout + labext.stderr
    line = next(ln for ln in (labext.stdout + labext.stderr).splitlines() if "jupyterlab-ai4lab" in ln)
    assert "enabled" in line and "OK" in line
    server = subprocess.run([str(bin_dir / "jupyter"), "server", "extension", "list"], capture_output=True, text=True)
    out = server.stdout + server.stderr
    assert "jupyterlab_ai4lab enabled" in " ".join(out.replace("\x1b[32m", "").replace("\x1b[0m", "").split())
