"""Test inputs for serverless inference and pipelines: big images of held-out digits."""

from __future__ import annotations

from pathlib import Path

from ai4lab.core.envs import ensure_env
from ai4lab.core.settings import bundled_catalog_path
from tests.modules.helpers import env_python, loads_pairs

BIG_CODE = (
    "import json, sys; from ai4lab_digits.data import write_dataset as w; "
    "a = w(sys.argv[1], n=int(sys.argv[2]), split='test', invert=True, scale=40); "
    "print(json.dumps([[str(p), label] for p, label in a]))"
)


def big_digits(root: Path, n: int = 3) -> list[tuple[Path, int]]:
    """``n`` held-out digits as 320x320 PNGs, dark ink on paper (what a scan or a photo looks like)."""
    env = ensure_env(bundled_catalog_path() / "modules" / "ai4lab-digits")
    return loads_pairs(env_python(env, "-c", BIG_CODE, str(root), str(n)))
