"""Dataset helpers built on ``sklearn.datasets.load_diabetes`` (shipped inside the wheel).

Command line: ``python -m ai4lab_diabetes.data FILE.csv [--split train] [--n N]``.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from ai4lab_diabetes.config import FEATURES, HELD_OUT_FRACTION, RANDOM_STATE, TARGET

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def split() -> Split:
    """The fixed train / held-out split (original units) used by the pretrained model."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True, scaled=False)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=HELD_OUT_FRACTION, random_state=RANDOM_STATE)
    return (X_tr, y_tr), (X_te, y_te)


def select(part: str = "train", n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ``train``, ``test`` (held-out) or ``all`` part, the first ``n`` of them."""
    (X_tr, y_tr), (X_te, y_te) = split()
    parts = {"train": (X_tr, y_tr), "test": (X_te, y_te), "all": (np.concatenate([X_tr, X_te]), np.concatenate([y_tr, y_te]))}
    if part not in parts:
        raise ValueError(f"split must be one of {sorted(parts)}, got {part!r}")
    X, y = parts[part]
    return (X[:n], y[:n]) if n is not None else (X, y)


def write_csv(path: str | os.PathLike[str], n: int | None = None, *, split: str = "train", with_target: bool = True) -> Path:
    """Write rows as a CSV with the 10 feature columns (and ``target``): the format train/predict read."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    X, y = select(split, n)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(FEATURES + ([TARGET] if with_target else []))
        for row, target in zip(X, y):
            w.writerow([f"{v:.10g}" for v in row] + ([f"{target:.10g}"] if with_target else []))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="output CSV file")
    parser.add_argument("--n", type=int, default=None, help="number of rows (default: all of the split)")
    parser.add_argument("--split", default="train", choices=["train", "test", "all"])
    parser.add_argument("--no-target", action="store_true", help="leave out the target column")
    args = parser.parse_args(argv)
    print(write_csv(args.path, args.n, split=args.split, with_target=not args.no_target))


if __name__ == "__main__":
    main()
