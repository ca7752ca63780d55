"""Fixtures: a private model cache and real CSVs written from load_diabetes."""

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
def train_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ai4lab_diabetes import data

    return data.write_csv(tmp_path_factory.mktemp("data") / "train.csv", split="train")


@pytest.fixture(scope="session")
def test_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ai4lab_diabetes import data

    return data.write_csv(tmp_path_factory.mktemp("data") / "held-out.csv", split="test")
