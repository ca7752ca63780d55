"""The data: CSV files with 64 pixel columns (0..16, the 8x8 digits of scikit-learn) and ``label``.

The module ships the 1,797 digits of ``sklearn.datasets.load_digits`` (``digits.csv.gz``), so that
it trains and predicts without downloading anything.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import torch

BUNDLED = Path(__file__).with_name("digits.csv.gz")


def read_csv(path: Path | str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N x 64, scaled to 0..1) and labels (N) of a CSV; ``None``: the bundled digits."""
    source = Path(path) if path else BUNDLED
    if source.is_dir():
        found = sorted(source.glob("*.csv")) + sorted(source.glob("*.csv.gz"))
        if not found:
            raise ValueError(f"no CSV file in the folder {source}")
        source = found[0]
    if not source.is_file():
        raise FileNotFoundError(f"dataset not found: {source}")
    raw = gzip.decompress(source.read_bytes()) if source.suffix == ".gz" else source.read_bytes()
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    pixels = [f"p{i}" for i in range(64)]
    if not rows or any(k not in rows[0] for k in [*pixels, "label"]):
        raise ValueError(f"{source.name}: expected columns p0..p63 and label")
    try:
        x = torch.tensor([[float(r[p]) for p in pixels] for r in rows]) / 16.0
        y = torch.tensor([int(r["label"]) for r in rows])
    except ValueError as e:
        raise ValueError(f"{source.name}: {e}") from None
    if not bool(((y >= 0) & (y <= 9)).all()):
        raise ValueError(f"{source.name}: labels must be 0..9")
    return x, y


def write_csv(path: Path, x: torch.Tensor, y: torch.Tensor) -> Path:
    """Write features scaled 0..1 back as a CSV of pixels 0..16 (to make datasets from the bundled one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"p{i}" for i in range(64)] + ["label"])
        for row, label in zip((x * 16).round().int().tolist(), y.tolist(), strict=True):
            w.writerow([*row, label])
    return path


def split(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Shuffled train and validation parts: x_train, y_train, x_val, y_val."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(len(y) * fraction))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]
