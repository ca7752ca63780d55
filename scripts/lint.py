"""The linters of issue 15 over hub/ and spawners/, configured in pyproject.toml.

    python scripts/lint.py            all three: ruff check, ruff format --check, mypy
    python scripts/lint.py mypy       one of them (ruff, format, mypy)

Run from any folder with the Python that has the test extras (``.venv/bin/python``); exits non-zero when
one of them finds something. tests/test_lint.py runs each as a test.

mypy cannot check the source tree as it is: the package ``ai4lab`` is hub/, with ``ai4lab.spawners`` from
spawners/ and ``ai4lab.config`` from config/ (``package-dir`` in pyproject.toml), and the editable
install maps them with an import hook mypy does not follow. So ``ai4lab`` is laid out as a folder of
symbolic links in .mypy_cache/src (the ``mypy_path`` of pyproject.toml), rebuilt on every run, and the
files in mypy's report are named by their real paths again (hub/core/db.py, not .../ai4lab/core/db.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK_TREE = ROOT / ".mypy_cache" / "src"  # the mypy_path of [tool.mypy]


def link_tree() -> Path:
    """.mypy_cache/src/ai4lab: hub/'s entries, spawners/ as spawners and config/'s __init__.py as config."""
    pkg = LINK_TREE / "ai4lab"
    shutil.rmtree(LINK_TREE, ignore_errors=True)
    (pkg / "config").mkdir(parents=True)
    for entry in sorted((ROOT / "hub").iterdir()):
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    (pkg / "spawners").symlink_to(ROOT / "spawners")
    # only the package itself: the rest of config/ is data (catalog modules with their own code, templates)
    (pkg / "config" / "__init__.py").symlink_to(ROOT / "config" / "__init__.py")
    return pkg


_LOCATION = re.compile(r"^(?P<path>[^:\s]+\.pyi?)(?P<rest>:.*)$")


def _real_paths(report: str) -> str:
    """mypy's lines name files in the link tree: name them by their place in the source tree."""

    def fix(line: str) -> str:
        m = _LOCATION.match(line)
        if not m:
            return line
        path = Path(m["path"])
        real = (path if path.is_absolute() else ROOT / path).resolve()
        try:
            return f"{real.relative_to(ROOT)}{m['rest']}"
        except ValueError:
            return line

    return "\n".join(fix(line) for line in report.splitlines())


def run(tool: str) -> int:
    """Run one linter from the top of the source tree, print what it says, return its exit code."""
    if tool == "ruff":
        cmd = [sys.executable, "-m", "ruff", "check", "--no-fix", "--output-format", "concise"]
    elif tool == "format":
        cmd = [sys.executable, "-m", "ruff", "format", "--check", "--diff"]
    elif tool == "mypy":
        link_tree()
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    else:
        raise SystemExit(f"unknown linter {tool!r}: one of ruff, format, mypy")
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("MYPYPATH", None)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    out = (proc.stdout + proc.stderr).rstrip("\n")
    if out:
        print(_real_paths(out) if tool == "mypy" else out)
    return proc.returncode


def main(argv: list[str]) -> int:
    tools = argv or ["ruff", "format", "mypy"]
    failed = [tool for tool in tools if run(tool) != 0]
    if failed:
        print(f"lint: {', '.join(failed)} found something (configuration: pyproject.toml)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
