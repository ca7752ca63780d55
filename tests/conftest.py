"""Session-wide real servers: one ai4lab platform shared by the integration tests.

Integration tests that share it are grouped on one xdist worker
(``xdist_group("platform")``); the browser-driven ones (``"platform-browser"``)
form a second group, so that a second worker with its own platform takes them
while the first goes through the rest (each group uses user names of its own:
their system accounts are shared by the machine). Tests that stop or restart a
platform start their own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import ai4os_data
from tests.platform_harness import Platform


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run when ``--dist loadgroup`` does not group: tests sharing a platform would start several.

    Why: pytest-xdist marks grouped tests by rewriting their node ids; a pytest
    release that stores node ids elsewhere makes the groups silently vanish,
    and then each worker starts its own platform with the same user accounts
    (tests of one see the other's processes).
    """
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rsplit("]", 1)[-1]:
            raise pytest.UsageError(f"--dist loadgroup did not group {item.nodeid}: this pytest and pytest-xdist "
                                    "do not work together (pin pytest as pyproject.toml does)")


@pytest.fixture
def reachable_tmp() -> Iterator[Path]:
    """A temporary folder that user accounts can traverse (pytest's own are private to root).

    For what the platform's user accounts must reach: environment caches,
    runtime prefixes, state folders.
    """
    import os
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ai4lab-test-"))
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def remote_catalogs(tmp_path_factory: pytest.TempPathFactory) -> ai4os_data.RemoteCatalogs:
    """AI4OS-layout catalogs (local git repos) built from the real metadata in ../shared/data."""
    return ai4os_data.build(Path(tmp_path_factory.mktemp("ai4os")) / "catalogs")


@pytest.fixture(scope="session")
def fake_oscar() -> Iterator[Any]:
    """One spec-validating fake OSCAR cluster per session, running the bundled modules' images (tests/oscar)."""
    from tests.fakes.oscar import FakeOscar, FakeOscarServer, bundled_images

    with FakeOscarServer(FakeOscar(images=bundled_images())) as server:
        yield server


@pytest.fixture(scope="session")
def fake_zenodo() -> Iterator[Any]:
    """One fake Zenodo per session (tests/fakes/zenodo.py); tests add the records they import."""
    from tests.fakes.zenodo import FakeZenodoServer

    with FakeZenodoServer() as server:
        yield server


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory, remote_catalogs: ai4os_data.RemoteCatalogs,
             fake_oscar: Any, fake_zenodo: Any) -> Iterator[Platform]:
    # two pretend GPUs: the inventory logic (CUDA_VISIBLE_DEVICES, exclusivity) needs no real device
    gpus = '[{"id": "0", "model": "Tesla T4"}, {"id": "1", "model": "Tesla T4"}]'
    from ai4lab.core.settings import bundled_catalog_path

    sources = [
        {"name": "bundled", "type": "folder", "path": str(bundled_catalog_path())},
        *remote_catalogs.sources(),
        {"name": "broken", "type": "git", "kind": "module", "url": "file:///nonexistent/catalog"},
    ]
    p = Platform.create(
        Path(tmp_path_factory.mktemp("platform")) / "state", gpus=gpus, catalog_sources=json.dumps(sources),
        own_storage_allow_http="true",  # users' own S3 / WebDAV servers of the tests listen on http://127.0.0.1
        zenodo_url=fake_zenodo.url, **fake_oscar.settings(),
        # an operator's environment, new in every run (its check names the run), so that its build and the
        # progress it shows on the spawn page are seen (tests/integration/test_session_environments.py)
        session_environments=json.dumps({"scratch": {
            "display_name": "Scratch", "description": "six on top of Base", "requirements": ["six==1.17.0"],
            "check": f"import six  # run {uuid.uuid4().hex}"}}),
    )
    p.start()
    try:
        yield p
    finally:
        if p.proc and p.proc.poll() is None:
            p.stop()
