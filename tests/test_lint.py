"""ruff (lint and format) and mypy over hub/ and spawners/ (issue 15), configured in pyproject.toml.

Each linter is a test of its own, run by scripts/lint.py (which also serves by hand:
``.venv/bin/python scripts/lint.py [ruff|format|mypy]``); a failure shows what the linter said.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tool", ["ruff", "format", "mypy"])
def test_lint(tool: str) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "lint.py"), tool], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, f"{tool} found something:\n{proc.stdout}{proc.stderr}"
