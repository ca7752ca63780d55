from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ai4lab.nomad import Federation, load_defaults, load_federation
from tests.fakes.nomad import FakeNode, FakeNomad, FakeNomadServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def defaults():
    return load_defaults()


@pytest.fixture(scope="session")
def federation() -> Federation:
    return load_federation(ROOT / "config" / "nomad" / "federation.example.yaml")


@pytest.fixture
def fake_nomad() -> Iterator[FakeNomadServer]:
    nodes = [
        FakeNode("cpu1", datacenter="ifca", pool="default"),
        FakeNode("gpu1", datacenter="ifca", pool="gpu", gpus={"Tesla T4": 2}, address="10.0.0.2"),
        FakeNode("gpu2", datacenter="psnc", pool="imagine", gpus={"NVIDIA A100": 1}, address="10.0.0.3"),
    ]
    with FakeNomadServer(FakeNomad(nodes, token="secret-token")) as server:
        yield server
