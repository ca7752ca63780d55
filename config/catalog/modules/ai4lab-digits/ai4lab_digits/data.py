"""Dataset helpers built on ``sklearn.datasets.load_digits`` (shipped inside the wheel).

They write datasets in the formats that :func:`ai4lab_digits.api.train`
accepts, so that tests, tutorials and the platform's own training tests have
real data without downloading anything.

Command line: ``python -m ai4lab_digits.data FOLDER [--n N] [--split test]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ai4lab_digits.config import HELD_OUT_FRACTION, RANDOM_STATE

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def split() -> Split:
    """The fixed train / held-out split of load_digits used by the pretrained model.

    Tests take their images from the held-out part, so accuracy numbers are
    measured on digits the pretrained model never saw.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=HELD_OUT_FRACTION, random_state=RANDOM_STATE, stratify=y
    )
    return (X_tr, y_tr), (X_te, y_te)


def _select(part: str, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    (X_tr, y_tr), (X_te, y_te) = split()
    if part == "train":
        X, y = X_tr, y_tr
    elif part == "test":
        X, y = X_te, y_te
    elif part == "all":
        X, y = np.concatenate([X_tr, X_te]), np.concatenate([y_tr, y_te])
    else:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {part!r}")
    if n is not None:
        if n < 1:
            raise ValueError("n must be positive")
        X, y = X[:n], y[:n]
    return X, y


def digit_image(pixels: np.ndarray, *, scale: int = 4, invert: bool = False, mode: str = "L") -> Image.Image:
    """Render one 8x8 load_digits sample (0..16) as an image.

    ``scale`` enlarges it (nearest neighbour), ``invert`` gives dark ink on a
    light background, ``mode`` ``"RGB"`` gives a colour image: the variations
    a user's uploads have.
    """
    a = (np.asarray(pixels, dtype=np.float64).reshape(8, 8) / 16.0 * 255.0).round().astype(np.uint8)
    if invert:
        a = 255 - a
    img = Image.fromarray(a, mode="L").resize((8 * scale, 8 * scale), Image.Resampling.NEAREST)
    return img.convert(mode) if mode != "L" else img


def write_dataset(
    folder: str | os.PathLike[str],
    n: int | None = 500,
    *,
    split: str = "train",
    scale: int = 4,
    invert: bool = False,
    fmt: str = "png",
) -> list[tuple[Path, int]]:
    """Write ``n`` digits as ``folder/<label>/<index>.<fmt>`` images; return (path, label) pairs.

    This is the class-subfolder layout that ``train(dataset=folder)`` reads.
    ``split`` picks the part of the fixed split (``train``, ``test``, ``all``).
    """
    root = Path(folder).expanduser()
    X, y = _select(split, n)
    written = []
    for i, (pixels, label) in enumerate(zip(X, y)):
        sub = root / str(int(label))
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{split}-{i:05d}.{fmt}"
        digit_image(pixels, scale=scale, invert=invert).save(path)
        written.append((path, int(label)))
    return written


def write_csv(path: str | os.PathLike[str], n: int | None = 500, *, split: str = "train") -> Path:
    """Write ``n`` digits as a CSV of 64 pixel columns (``pixel_0``..``pixel_63``) + ``label``."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    X, y = _select(split, n)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"pixel_{i}" for i in range(64)] + ["label"])
        for pixels, label in zip(X, y):
            w.writerow([int(v) for v in pixels] + [int(label)])
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="output folder (class subfolders) or .csv file")
    parser.add_argument("--n", type=int, default=500, help="number of digits (default 500)")
    parser.add_argument("--split", default="train", choices=["train", "test", "all"])
    parser.add_argument("--scale", type=int, default=4, help="image enlargement factor")
    parser.add_argument("--invert", action="store_true", help="dark ink on a light background")
    args = parser.parse_args(argv)
    if args.folder.endswith(".csv"):
        print(write_csv(args.folder, args.n, split=args.split))
    else:
        written = write_dataset(args.folder, args.n, split=args.split, scale=args.scale, invert=args.invert)
        print(json.dumps([[str(p), label] for p, label in written]))


if __name__ == "__main__":
    main()
