"""Local datasets of two Flower clients: different CSV splits of the digits module's own data (no download)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ai4lab.core.envs import ensure_env, env_bin
from ai4lab.core.settings import bundled_catalog_path


def digit_splits(folder: Path, n: int = 300) -> list[Path]:
    """``train.csv`` and ``test.csv`` of ``n`` digits each, written by ``ai4lab_digits.data`` in its Flower env."""
    env = ensure_env(bundled_catalog_path() / "modules" / "ai4lab-digits", extras=("flower",))
    out = []
    for part in ("train", "test"):
        path = folder / f"{part}.csv"
        subprocess.run([str(env_bin(env, "python")), "-m", "ai4lab_digits.data", str(path), "--n", str(n),
                        "--split", part], check=True, capture_output=True)
        out.append(path)
    return out
