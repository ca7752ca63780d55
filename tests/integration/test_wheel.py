"""The wheel ships what the platform needs: built from the source tree, installed into a fresh venv, it runs.

Why: the suite otherwise runs from an editable install, where ``ai4lab`` reads
everything from the checkout; a file that the package configuration leaves out
(package data, a new sub-package, a dot file of the module template), or a path
computed from ``__file__`` that only works in a checkout, shows up only for
whoever installs the wheel. This test builds the wheel offline, installs it
into a fresh venv without downloading anything, and starts the platform from
there with its working directory outside the source tree.

The fresh venv gets the suite venv's dependencies through a ``.pth`` file that
lists the suite's site-packages: a path line adds the folder to ``sys.path``
but does not run the ``.pth`` files inside it, so the suite's editable finder
of ``ai4lab`` stays off (checked below). The dependencies' console scripts
(``jupyterhub``, ``mlflow``, ``jupyterhub-singleuser``, ...) are copied into the
fresh venv with its own Python in their first line, as installing them there
would have written them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import psutil
import pytest

from tests.platform_harness import Platform, gone, platform_processes, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("wheel")]

ROOT = Path(__file__).resolve().parents[2]
SUITE_BIN = Path(sys.executable).parent
#: source folder -> where the wheel puts it ([tool.setuptools] package-dir in pyproject.toml)
PACKAGE_DIRS = {"hub": "ai4lab", "spawners": "ai4lab/spawners", "config": "ai4lab/config"}
BUILD_INPUTS = ("pyproject.toml", "README.md", *PACKAGE_DIRS)


def source_files() -> list[str]:
    """What a release is built from: tracked and new (not ignored) files of the build inputs, as they are now."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
             *BUILD_INPUTS], capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but caches and builds
        listed = [p.relative_to(ROOT).as_posix() for top in BUILD_INPUTS for p in
                  ([ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*"))
                  if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".egg-info"))]
    return sorted(f for f in listed if f and (ROOT / f).is_file())  # a deleted, not yet committed file: gone


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def build_wheel(files: list[str], work: Path) -> Path:
    """The wheel of a copy of the source tree (an in-tree build would leave build/ and *.egg-info in the checkout)."""
    src = work / "src"
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(work / "dist"), str(src)])
    wheel, = (work / "dist").glob("ai4lab-*.whl")
    return wheel


def fresh_venv(wheel: Path, venv: Path) -> Path:
    """A new venv with the wheel installed (nothing downloaded) and the suite's dependencies; its Python."""
    run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         str(wheel)])
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    suite_site = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "zz_suite_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(suite_site)))
    for script in sorted(SUITE_BIN.iterdir()):
        target = venv / "bin" / script.name
        if target.exists() or target.is_symlink() or script.name.startswith(("python", "activate", "Activate", "pip")):
            continue  # the wheel's own ai4lab, the venv's own files
        if not script.is_file():
            continue
        with open(script, "rb") as f:
            first = f.readline()
        if first.startswith(b"#!") and str(SUITE_BIN).encode() in first:
            target.write_bytes(b"#!" + str(python).encode() + b"\n" + script.read_bytes()[len(first):])
            target.chmod(0o755)
        else:
            target.symlink_to(script)
    return python


CHECK_INSTALL = """
import json, sys
from pathlib import Path
import ai4lab, ai4lab.config, ai4lab.spawners, ai4lab.core.db
from ai4lab.catalog.module_template import new_module, template_path
from ai4lab.core.runtime import shipped
from ai4lab.core.settings import Settings
from ai4lab.jhub.hubconfig import default_config_file
folder = new_module("wheel-check", Path(sys.argv[1]), {"title": "Wheel check"})
print(json.dumps({
    "modules": {m: sys.modules[m].__file__ for m in ("ai4lab", "ai4lab.config", "ai4lab.spawners")},
    "editable_finders": [type(f).__module__ for f in sys.meta_path if "editable" in type(f).__module__],
    "catalog": str(shipped("catalog")),
    "catalog_source": Settings().catalog_sources[0].path,
    "template": str(template_path()),
    "hub_config": str(default_config_file()),
    "generated": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
}))
"""


def test_wheel_installs_and_runs_the_platform(tmp_path: Path) -> None:
    t0 = time.monotonic()
    files = source_files()
    wheel = build_wheel(files, tmp_path / "build")

    # every file of hub/, spawners/ and config/ is in the wheel where the package directories put it
    shipped = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in files if f.split("/", 1)[0] in PACKAGE_DIRS
               and f"{PACKAGE_DIRS[f.split('/', 1)[0]]}/{f.split('/', 1)[1]}" not in shipped]
    assert missing == [], f"the wheel lacks these files of the source tree (pyproject.toml [tool.setuptools]): {missing}"
    assert not [n for n in shipped if n.endswith(".pyc") or "__pycache__" in n]

    venv = tmp_path / "venv"
    python = fresh_venv(wheel, venv)
    site = (venv / "lib").resolve()
    elsewhere = tmp_path / "elsewhere"  # the working directory: outside the source tree
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AI4LAB_", "JUPYTERHUB_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != SUITE_BIN.resolve())
    env["AI4LAB_CONFIG"] = str(elsewhere / "ai4lab.yaml")  # none: the defaults
    (tmp_path / "generated").mkdir()
    found = json.loads(run([str(python), "-c", CHECK_INSTALL, str(tmp_path / "generated")], cwd=elsewhere,
                           env=env).stdout)
    for module, path in found["modules"].items():
        assert Path(path).resolve().is_relative_to(site), f"{module} comes from {path}, not the installed wheel"
    assert found["editable_finders"] == [], "the suite's editable install of ai4lab is active in the fresh venv"
    for key in ("catalog", "catalog_source", "template", "hub_config"):
        assert Path(found[key]).resolve().is_relative_to(site), f"{key}: {found[key]} is not in the installed wheel"
    assert (Path(found["catalog"]) / "modules" / "ai4lab-digits" / "ai4-metadata.yml").is_file()
    assert {".gitignore", ".dockerignore", "Dockerfile", "ai4-metadata.yml", "pyproject.toml",
            "wheel_check/api.py"} <= set(found["generated"]), found["generated"]
    installed = time.monotonic() - t0

    # the platform, started by the wheel's own `ai4lab up` from outside the source tree
    p = Platform.create(tmp_path / "state")
    p.env = {**{k: v for k, v in p.env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}, "PATH": env["PATH"]}
    p.bin_dir, p.cwd = venv / "bin", elsewhere
    assert (p.bin_dir / "ai4lab").read_text().startswith(f"#!{python}")
    tree: list[psutil.Process] = []
    try:
        p.start(timeout=120)
        assert httpx.get(f"{p.url}/hub/api/", timeout=10).status_code == 200

        def health() -> dict | None:
            try:
                r = httpx.get(f"{p.url}/services/ai4lab/health", timeout=5)
            except httpx.TransportError:
                return None
            return r.json() if r.status_code == 200 else None

        assert wait_until(health, 60, "the platform API did not answer /services/ai4lab/health")["status"] == "ok"
        with httpx.Client(base_url=f"{p.url}/services/ai4lab", timeout=30) as api:
            modules = api.get("/catalog/modules", params={"per_page": 200})
            tools = api.get("/catalog/tools", params={"per_page": 200})
        assert modules.status_code == 200 and tools.status_code == 200, (modules.text[:300], tools.text[:300])
        assert "ai4lab-digits" in [i["id"] for i in modules.json()["items"]], modules.text[:1000]
        assert "ai4lab-flower" in [i["id"] for i in tools.json()["items"]], tools.text[:1000]
        # every process of the platform runs the fresh venv's Python, none reads the checkout
        tree = p.process_tree()
        cmdlines = [proc.cmdline() for proc in tree]
        joined = [" ".join(c) for c in cmdlines]
        assert any("ai4lab.api" in c for c in joined) and any("jupyterhub" in c for c in joined), joined
        for c in joined:
            assert str(ROOT) not in c and str(SUITE_BIN) not in c, f"a platform process runs from the checkout: {c}"
        for c in cmdlines:
            if c and Path(c[0]).name.startswith("python"):
                assert Path(c[0]).is_relative_to(venv), f"a platform process runs another Python: {' '.join(c)}"
    finally:
        if p.proc and p.proc.poll() is None:
            p.stop(signal.SIGINT)
    assert p.proc is not None and p.proc.returncode == 0, p.output
    assert "ai4lab stopped" in p.output
    assert gone(tree) == [], "processes of the platform survived its stop"
    assert gone(platform_processes(p.state)) == []
    print(f"wheel built and installed in {installed:.1f} s, all in {time.monotonic() - t0:.1f} s")
