"""Fixtures of the catalog tests: the AI4OS remote catalogs built from the shared data, databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ai4lab.core import db
from ai4lab.catalog import Catalog
from ai4lab.core.settings import SourceConfig
from tests import ai4os_data
from tests.catalog.helpers import CatalogEnv


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> ai4os_data.RemoteCatalogs:
    """The git remote catalogs (one repository per shared-data file), built once per test module."""
    return ai4os_data.build(tmp_path_factory.mktemp("remote-catalogs") / "rc")


def new_db(folder: Path) -> str:
    url = f"sqlite:///{folder / 'ai4lab.sqlite'}"
    db.upgrade(url)
    return url


@pytest.fixture(scope="module")
def git_env(rc: ai4os_data.RemoteCatalogs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CatalogEnv]:
    """A catalog of the two git sources, refreshed once; tests must not refresh it again."""
    work = tmp_path_factory.mktemp("git-catalog")
    url = new_db(work)
    sources = [SourceConfig(**s) for s in rc.sources()]
    catalog = Catalog(sources, work / "cache", url)
    errors = catalog.refresh()
    yield CatalogEnv(catalog=catalog, sources=sources, cache=work / "cache", db_url=url, refresh_errors=errors)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return new_db(tmp_path)
