"""A private model cache for the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("models")
    old = os.environ.get("AI4LAB_MODEL_DIR")
    os.environ["AI4LAB_MODEL_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("AI4LAB_MODEL_DIR", None)
    else:
        os.environ["AI4LAB_MODEL_DIR"] = old
