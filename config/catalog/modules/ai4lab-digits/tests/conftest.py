"""Fixtures: a private model cache and real datasets written from load_digits."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the tests' pretrained model out of the user's cache (and test first-use training)."""
    path = tmp_path_factory.mktemp("models")
    old = os.environ.get("AI4LAB_MODEL_DIR")
    os.environ["AI4LAB_MODEL_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("AI4LAB_MODEL_DIR", None)
    else:
        os.environ["AI4LAB_MODEL_DIR"] = old


@pytest.fixture(scope="session")
def train_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 training digits as class-subfolder PNGs (the layout users upload)."""
    from ai4lab_digits import data

    root = tmp_path_factory.mktemp("train-folder")
    data.write_dataset(root, n=600, split="train")
    return root
