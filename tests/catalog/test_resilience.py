"""A catalog that breaks keeps its last good items; broken items are reported, not fatal."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from ai4lab.catalog import Catalog
from ai4lab.catalog.sources import RemoteCatalog, load_folder_source
from ai4lab.core.settings import SourceConfig
from tests import ai4os_data
from tests.catalog.conftest import new_db
from tests.catalog.helpers import DATA, MODULES_SOURCE, TOOLS_SOURCE, all_ids

N_MODULES, N_TOOLS = 14, 6


@pytest.fixture
def own(tmp_path: Path) -> tuple[ai4os_data.RemoteCatalogs, Catalog]:
    """Repositories this test may break, and a catalog refreshed once from them."""
    rc = ai4os_data.build(tmp_path / "rc")
    catalog = Catalog([SourceConfig(**s) for s in rc.sources()], tmp_path / "cache", new_db(tmp_path))
    catalog.refresh()
    assert (len(all_ids(catalog, "module")), len(all_ids(catalog, "tool"))) == (N_MODULES, N_TOOLS)
    return rc, catalog


def repo_of(rc: ai4os_data.RemoteCatalogs, item_id: str) -> Path:
    [path] = [p for p in (rc.root / "repos").glob(f"*/{item_id}")]
    return path


def fetched_at(catalog: Catalog, source: str) -> float:
    return json.loads((catalog.cache_root / source / "status.json").read_text())["fetched_at"]


def test_broken_catalogs_keep_the_last_good_cache(own: tuple[ai4os_data.RemoteCatalogs, Catalog], tmp_path: Path) -> None:
    """Modules: the catalog repository becomes unreadable; tools: the source points at a URL that does not exist."""
    rc, catalog = own
    before = {k: all_ids(catalog, k) for k in ("module", "tool")}
    shutil.rmtree(rc.root / "modules-catalog")
    nowhere = f"file://{tmp_path}/no/such/catalog"
    sources = [SourceConfig(**{**s, "url": nowhere}) if s["kind"] == "tool" else SourceConfig(**s) for s in rc.sources()]
    broken = Catalog(sources, catalog.cache_root, catalog.db_url)  # same names, same cache
    errors = broken.refresh()
    assert {k: all_ids(broken, k) for k in ("module", "tool")} == before
    top = {e.source: e.reason for e in errors if e.item == "*"}
    assert set(top) == {MODULES_SOURCE, TOOLS_SOURCE}
    assert f"cannot read the catalog {rc.modules_url}" in top[MODULES_SOURCE]
    assert "git repository" in top[MODULES_SOURCE]  # git's own explanation
    assert f"cannot read the catalog {nowhere}" in top[TOOLS_SOURCE]
    # the source-level entry comes first, then the item errors of the last good fetch
    mod_errors = [e.item for e in errors if e.source == MODULES_SOURCE]
    assert mod_errors[0] == "*"
    assert set(mod_errors) == {"*", ai4os_data.MISSING_REPO, "phyto-plankton-classification"}
    # a failure is not a fetch
    status = json.loads((catalog.cache_root / MODULES_SOURCE / "status.json").read_text())
    assert status["last_error_at"] > status["fetched_at"]
    # the first catalog object, reading the same cache, reports the failures as well
    assert {e.source for e in catalog.errors() if e.item == "*"} == {MODULES_SOURCE, TOOLS_SOURCE}
    # with its good tools URL, a refresh clears the tools error; the modules catalog is still gone
    errors = catalog.refresh()
    assert {e.source for e in errors if e.item == "*"} == {MODULES_SOURCE}
    assert {k: all_ids(catalog, k) for k in ("module", "tool")} == before


def test_broken_item_repos(own: tuple[ai4os_data.RemoteCatalogs, Catalog]) -> None:
    """Broken YAML / a schema error committed on top, a repository that vanishes, an item dropped from the catalog."""
    rc, catalog = own
    yolo = repo_of(rc, "ai4os-yolo-torch")
    (yolo / "ai4-metadata.yml").write_text("title: YOLO\nsummary: [unclosed\n")
    ai4os_data.git("commit", "-q", "-am", "oops", cwd=yolo)
    dogs = repo_of(rc, "dogs-breed-detector")
    text = (dogs / "ai4-metadata.yml").read_text()
    (dogs / "ai4-metadata.yml").write_text(text.replace("title: Dogs breed detector", "title: [1, 2]"))
    ai4os_data.git("commit", "-q", "-am", "oops", cwd=dogs)
    shutil.rmtree(repo_of(rc, "thermal-anomaly-segmenter"))
    cat = rc.root / "tools-catalog"
    text = (cat / ".gitmodules").read_text()
    start = text.index('[submodule "ai4os-cvat"]')
    (cat / ".gitmodules").write_text(text[:start] + text[text.index("[submodule", start + 1):])
    ai4os_data.git("commit", "-q", "-am", "drop cvat", cwd=cat)

    errors = {e.item: e for e in catalog.refresh()}
    assert set(errors) == {"ai4os-yolo-torch", "dogs-breed-detector", "thermal-anomaly-segmenter",
                           "phyto-plankton-classification", ai4os_data.MISSING_REPO}
    assert all(e.source == MODULES_SOURCE for e in errors.values())
    # invalid YAML on top: reported with the parser's reason, the last good version is still offered
    assert "not valid YAML" in errors["ai4os-yolo-torch"].reason and "line 3" in errors["ai4os-yolo-torch"].reason
    assert errors["ai4os-yolo-torch"].reason.endswith("serving the last good version")
    assert catalog.get("module", "ai4os-yolo-torch").title == "YOLO models"
    # schema error: the validator's reason with the field
    reason = errors["dogs-breed-detector"].reason
    assert reason.startswith("title: ") and "is not of type 'string'" in reason
    assert catalog.get("module", "dogs-breed-detector").title == "Dogs breed detector"
    # a repository that cannot be fetched keeps its last good copy (and says why)
    assert "git repository" in errors["thermal-anomaly-segmenter"].reason
    assert "thermal-anomaly-segmenter" in errors["thermal-anomaly-segmenter"].location
    thermal = catalog.get("module", "thermal-anomaly-segmenter")
    assert thermal is not None and thermal.title == "Thermal Anomaly Segmenter (TASeg)"
    # the others load, none is lost
    assert len(all_ids(catalog, "module")) == N_MODULES
    # an item no longer listed by its catalog goes away
    assert catalog.get("tool", "ai4os-cvat") is None
    assert len(all_ids(catalog, "tool")) == N_TOOLS - 1


@pytest.fixture
def rc_sources_tmp(rc: ai4os_data.RemoteCatalogs, tmp_path: Path) -> tuple[list[SourceConfig], Path, str]:
    return [SourceConfig(**s) for s in rc.sources()], tmp_path / "cache", new_db(tmp_path)


def test_not_fetched_yet_is_reported(rc_sources_tmp: tuple[list[SourceConfig], Path, str]) -> None:
    sources, cache, url = rc_sources_tmp
    catalog = Catalog(sources, cache, url)
    errors = catalog.errors()
    assert [(e.source, e.item) for e in errors] == [(MODULES_SOURCE, "*"), (TOOLS_SOURCE, "*")]
    assert all("not fetched yet" in e.reason for e in errors)
    assert all_ids(catalog, "module") == []


def test_refresh_interval(rc_sources_tmp: tuple[list[SourceConfig], Path, str]) -> None:
    sources, cache, url = rc_sources_tmp
    reader = Catalog(sources, cache, url)  # e.g. the running platform
    assert all_ids(reader, "tool") == []
    catalog = Catalog(sources, cache, url)  # default refresh_interval: 3600 s
    assert all(r.stale() for r in catalog.remotes.values())  # never fetched
    catalog.refresh(force=False)  # stale: fetches
    first = {s.name: fetched_at(catalog, s.name) for s in sources}
    assert len(all_ids(catalog, "module")) == N_MODULES
    assert not any(r.stale() for r in catalog.remotes.values())
    # the reader notices that the cache changed under it
    assert len(all_ids(reader, "tool")) == N_TOOLS
    assert not [e for e in reader.errors() if e.item == "*"]
    time.sleep(0.05)
    catalog.refresh(force=False)  # fresh: no fetch
    assert {s.name: fetched_at(catalog, s.name) for s in sources} == first
    assert len(all_ids(catalog, "module")) == N_MODULES
    # the same sources with refresh_interval 0 are always stale
    eager = Catalog([s.model_copy(update={"refresh_interval": 0}) for s in sources], cache, url)
    time.sleep(0.05)
    eager.refresh(force=False)
    second = {s.name: fetched_at(eager, s.name) for s in sources}
    assert all(second[n] > first[n] for n in first)


def test_remote_source_needs_kind_and_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        RemoteCatalog(SourceConfig(name="x", type="git", url="file:///x"), tmp_path)
    with pytest.raises(ValueError, match="url is required"):
        RemoteCatalog(SourceConfig(name="x", type="http", kind="module"), tmp_path)
    with pytest.raises(ValueError, match="unique"):
        Catalog([SourceConfig(name="x", type="folder", path="/a"), SourceConfig(name="x", type="folder", path="/b")],
                tmp_path, "sqlite://")


# -- folder sources ---------------------------------------------------------------------


def put(folder: Path, data_file: str, name: str = "ai4-metadata.yml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / data_file, folder / name)
    return folder


def test_folder_source_skips_broken_items_only(tmp_path: Path) -> None:
    root = tmp_path / "local"
    put(root / "modules" / "demo", "modules/ai4os-demo-app.yml")
    put(root / "modules" / "phyto", "modules/phyto-plankton-classification.yml")
    put(root / "modules" / "old-demo", "legacy/ai4os-demo-app.metadata.json", "metadata.json")
    (root / "modules" / "empty").mkdir()
    put(root / "modules" / ".hidden", "modules/ai4os-yolo-torch.yml")
    put(root / "tools" / "llm", "tools/ai4os-llm.yml")
    result = load_folder_source(SourceConfig(name="local", type="folder", path=str(root)))
    assert sorted((i.kind, i.id) for i in result.items) == [("module", "demo"), ("module", "old-demo"), ("tool", "llm")]
    assert all(i.source == "local" for i in result.items)
    errors = {e.item: e for e in result.errors}
    assert set(errors) == {"phyto", "empty"}
    assert "mapping values are not allowed here (line 14, column 30)" in errors["phyto"].reason
    assert errors["phyto"].location == str(root / "modules" / "phyto")
    assert "no ai4-metadata.yml" in errors["empty"].reason


def test_folder_source_of_one_kind(tmp_path: Path) -> None:
    put(tmp_path / "cvat", "tools/ai4os-cvat.yml")
    put(tmp_path / "dev", "tools/ai4os-dev-env.yml", "ai4-metadata.yaml")
    result = load_folder_source(SourceConfig(name="t", type="folder", kind="tool", path=str(tmp_path)))
    assert sorted((i.kind, i.id) for i in result.items) == [("tool", "cvat"), ("tool", "dev")]
    assert result.errors == []


def test_folder_source_with_a_local_package(tmp_path: Path, db_url: str) -> None:
    pkg = put(tmp_path / "modules" / "demo", "modules/ai4os-demo-app.yml")
    (pkg / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1"\n[project.entry-points."deepaas.v2.model"]\ndemo = "demo.api"\n')
    catalog = Catalog([SourceConfig(name="local", type="folder", path=str(tmp_path))], tmp_path / "c", db_url)
    item = catalog.get("module", "demo")
    assert item is not None
    assert item.run.package_path == str(pkg) and item.run.entry_point == "demo"
    assert catalog.search("module")["items"][0]["runs_locally"] is True


def test_missing_folder_source_is_an_error_entry(tmp_path: Path, db_url: str) -> None:
    other = tmp_path / "other"
    put(other / "modules" / "demo", "modules/ai4os-demo-app.yml")
    catalog = Catalog([
        SourceConfig(name="gone", type="folder", path=str(tmp_path / "nowhere")),
        SourceConfig(name="other", type="folder", path=str(other)),
    ], tmp_path / "cache", db_url)
    errors = catalog.errors()
    assert [(e.source, e.item) for e in errors] == [("gone", "*")]
    assert "folder not found" in errors[0].reason and "nowhere" in errors[0].reason
    assert all_ids(catalog, "module") == ["demo"]


def test_folder_item_with_broken_pyproject_is_an_error_entry(tmp_path: Path, db_url: str) -> None:
    put(tmp_path / "modules" / "demo", "modules/ai4os-demo-app.yml")
    bad = put(tmp_path / "modules" / "bad", "modules/ai4os-yolo-torch.yml")
    (bad / "pyproject.toml").write_text("[project\nname = 'bad'\n")
    catalog = Catalog([SourceConfig(name="local", type="folder", path=str(tmp_path))], tmp_path / "c", db_url)
    assert all_ids(catalog, "module") == ["demo"]
    assert [e.item for e in catalog.errors()] == ["bad"]


def test_malformed_v1_file_is_an_error_entry(tmp_path: Path, db_url: str) -> None:
    put(tmp_path / "modules" / "demo", "modules/ai4os-demo-app.yml")
    v1 = json.loads((DATA / "legacy" / "ai4os-demo-app.metadata.json").read_text())
    v1["sources"] = None
    (tmp_path / "modules" / "old").mkdir()
    (tmp_path / "modules" / "old" / "metadata.json").write_text(json.dumps(v1))
    catalog = Catalog([SourceConfig(name="local", type="folder", path=str(tmp_path))], tmp_path / "c", db_url)
    assert all_ids(catalog, "module") == ["demo"]
    assert [e.item for e in catalog.errors()] == ["old"]


# -- submodule names --------------------------------------------------------------------


def one_item_catalog(tmp_path: Path, name: str) -> SourceConfig:
    repo = tmp_path / "repo"
    ai4os_data.make_repo(repo, {"ai4-metadata.yml": (DATA / "modules/ai4os-demo-app.yml").read_text()}, "main")
    gitmodules = f'[submodule "{name}"]\n\tpath = {name}\n\turl = file://{repo}\n\tbranch = main\n'
    ai4os_data.make_repo(tmp_path / "catalog", {".gitmodules": gitmodules}, "master")
    return SourceConfig(name="s", type="git", kind="module", url=f"file://{tmp_path / 'catalog'}")


def test_submodule_name_with_a_dot(tmp_path: Path, db_url: str) -> None:
    catalog = Catalog([one_item_catalog(tmp_path, "demo.v2")], tmp_path / "cache", db_url)
    catalog.refresh()
    assert all_ids(catalog, "module") == ["demo.v2"]


def test_submodule_name_with_a_slash(tmp_path: Path, db_url: str) -> None:
    catalog = Catalog([one_item_catalog(tmp_path, "modules/demo")], tmp_path / "cache", db_url)
    catalog.refresh()
    assert len(all_ids(catalog, "module")) == 1
