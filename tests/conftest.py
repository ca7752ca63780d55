"""Session-wide real servers: one ai4lab platform shared by the integration tests.

Integration tests that share it are grouped on one xdist worker
(``xdist_group("platform")``); tests that stop or restart a platform start
their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform_harness import Platform


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # two pretend GPUs: the inventory logic (CUDA_VISIBLE_DEVICES, exclusivity) needs no real device
    gpus = '[{"id": "0", "model": "Tesla T4"}, {"id": "1", "model": "Tesla T4"}]'
    p = Platform.create(Path(tmp_path_factory.mktemp("platform")) / "state", gpus=gpus)
    p.start()
    try:
        yield p
    finally:
        if p.proc and p.proc.poll() is None:
            p.stop()
