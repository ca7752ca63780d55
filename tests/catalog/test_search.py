"""Search, filters, sorting, pagination and facets over the real items; id collisions between sources."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from ai4_metadata import migrate as ai4_migrate

from ai4lab.catalog import Catalog
from ai4lab.catalog import publish as pub
from ai4lab.core.settings import SourceConfig
from tests import ai4os_data
from tests.catalog.helpers import DATA, MODULES_SOURCE, TOOLS_SOURCE, CatalogEnv, all_ids, raw

GPU_MODULES = {"ai4os-demo-app", "phyto-plankton-classification-e6a5445", "sentinel-data-fusion"}


@pytest.fixture(scope="module")
def docs(rc: ai4os_data.RemoteCatalogs) -> dict[tuple[str, str], dict[str, Any]]:
    """The oracle: each valid item's metadata as plain PyYAML / ai4-metadata's migration read it."""
    out = {}
    for e in rc.expected:
        if e.valid:
            data = dict(ai4_migrate.migrate(DATA / e.file)) if e.file.startswith("legacy/") else raw(e.file)
            out[(e.kind, e.item_id)] = data
    return out


def ids_where(docs: dict, kind: str, pred: Any) -> set[str]:
    return {i for (k, i), d in docs.items() if k == kind and pred(d)}


def has(values: list[str] | None, wanted: str) -> bool:
    return wanted.lower() in [str(v).lower() for v in values or []]


def text_of(item_id: str, d: dict[str, Any]) -> str:
    parts = [item_id, d["title"], d["summary"], d["description"], *map(str, d["tags"]), *d["tasks"],
             *d["categories"], *d["libraries"]]
    return " ".join(parts).lower()


# -- full text ------------------------------------------------------------------------


def test_yolo_finds_yolo_torch_first(git_env: CatalogEnv) -> None:
    r = git_env.catalog.search("module", q="yolo")
    ids = [it["id"] for it in r["items"]]
    assert ids[0] == "ai4os-yolo-torch"
    assert "socib-rip-currents-detection" in ids  # tagged 'yolo'
    assert r["total"] == len(ids) == 2
    assert [it["id"] for it in git_env.catalog.search("module", q="YOLO")["items"]] == ids  # case-insensitive


def test_every_word_must_match(git_env: CatalogEnv, docs: dict) -> None:
    for q in ("object detection", "deep learning image", "yolo models", "federated learning"):
        for kind in ("module", "tool"):
            words = q.split()
            want = {i for (k, i), d in docs.items() if k == kind and all(w in text_of(i, d) for w in words)}
            got = all_ids(git_env.catalog, kind, q=q)
            assert set(got) == want, (q, kind)
    assert set(all_ids(git_env.catalog, "module", q="object detection")) == {"ai4os-fasterrcnn-torch", "ai4os-yolo-torch"}
    assert all_ids(git_env.catalog, "module", q="yolo nosuchwordanywhere") == []
    assert all_ids(git_env.catalog, "tool", q="yolo") == []


def test_relevance_prefers_title_and_tags(git_env: CatalogEnv) -> None:
    # 'federated' is in both tools' titles and tags; 'flower' only in one title
    assert all_ids(git_env.catalog, "tool", q="federated flower") == ["ai4os-federated-server"]
    ids = all_ids(git_env.catalog, "tool", q="federated")
    assert set(ids) == {"ai4os-federated-server", "ai4os-nvflare"}
    # equal scores fall back to the title order
    assert ids == ["ai4os-federated-server", "ai4os-nvflare"]


# -- filters --------------------------------------------------------------------------


@pytest.mark.parametrize("field,key,value", [
    ("task", "tasks", "Computer Vision"),
    ("task", "tasks", "time series"),
    ("category", "categories", "AI4 trainable"),
    ("tag", "tags", "vo.imagine-ai.eu"),
    ("tag", "tags", "deep learning"),
    ("library", "libraries", "PyTorch"),
    ("library", "libraries", "keras"),
    ("data_type", "data-type", "Video"),
    ("data_type", "data-type", "Tabular"),
])
def test_filter(git_env: CatalogEnv, docs: dict, field: str, key: str, value: str) -> None:
    for kind in ("module", "tool"):
        want = ids_where(docs, kind, lambda d: has(d.get(key), value))
        got = all_ids(git_env.catalog, kind, **{field: value})
        assert set(got) == want, (kind, field, value)
    assert all_ids(git_env.catalog, "module", **{field: "no such value"}) == []


def test_filters_combine(git_env: CatalogEnv, docs: dict) -> None:
    want = ids_where(docs, "module", lambda d: has(d["tasks"], "Computer Vision") and has(d["libraries"], "PyTorch")
                     and has(d["tags"], "vo.imagine-ai.eu"))
    got = all_ids(git_env.catalog, "module", task="Computer Vision", library="PyTorch", tag="vo.imagine-ai.eu")
    assert set(got) == want == {"ai4os-yolo-torch", "ai4os-fasterrcnn-torch", "socib-rip-currents-detection"}
    assert set(all_ids(git_env.catalog, "module", q="yolo", tag="vo.imagine-ai.eu")) == {
        "ai4os-yolo-torch", "socib-rip-currents-detection"}
    assert all_ids(git_env.catalog, "module", q="yolo", library="TensorFlow") == []


def test_gpu_filter(git_env: CatalogEnv, docs: dict) -> None:
    def declares_gpu(d: dict) -> bool:
        res = d.get("resources") or {}
        return any((res.get(p) or {}).get("gpu", 0) > 0 for p in ("inference", "training")) or has(d["tags"], "gpu")

    assert ids_where(docs, "module", declares_gpu) == GPU_MODULES
    assert set(all_ids(git_env.catalog, "module", gpu=True)) == GPU_MODULES
    everything = set(all_ids(git_env.catalog, "module"))
    assert set(all_ids(git_env.catalog, "module", gpu=False)) == everything - GPU_MODULES
    assert all_ids(git_env.catalog, "tool", gpu=True) == []
    assert len(all_ids(git_env.catalog, "tool", gpu=False)) == 6
    summaries = {it["id"]: it["gpu_capable"] for it in git_env.catalog.search("module", per_page=100)["items"]}
    assert {i for i, g in summaries.items() if g} == GPU_MODULES


def test_source_filter(git_env: CatalogEnv) -> None:
    assert len(all_ids(git_env.catalog, "module", source=MODULES_SOURCE)) == 14
    assert all_ids(git_env.catalog, "module", source=TOOLS_SOURCE) == []
    assert len(all_ids(git_env.catalog, "tool", source=TOOLS_SOURCE)) == 6
    assert all_ids(git_env.catalog, "tool", source="nope") == []


# -- sorting and pages ----------------------------------------------------------------


def test_sort_by_title(git_env: CatalogEnv) -> None:
    items = git_env.catalog.search("module", sort="title", per_page=100)["items"]
    titles = [it["title"].lower() for it in items]
    assert titles == sorted(titles) and len(titles) == 14


def test_sort_by_updated(git_env: CatalogEnv, docs: dict) -> None:
    up = git_env.catalog.search("tool", sort="updated", per_page=100)["items"]
    down = git_env.catalog.search("tool", sort="-updated", per_page=100)["items"]
    dates = [it["updated"] for it in up]
    assert dates == sorted(dates)
    assert [it["updated"] for it in down] == sorted(dates, reverse=True)
    assert dates == sorted(d["dates"]["updated"] for (k, _), d in docs.items() if k == "tool")
    assert down[0]["id"] == "ai4os-dev-env"  # updated 2026-08-13
    mods = [it["updated"] or "" for it in git_env.catalog.search("module", sort="-updated", per_page=100)["items"]]
    assert mods == sorted(mods, reverse=True)


def test_unknown_sort(git_env: CatalogEnv) -> None:
    with pytest.raises(ValueError, match="unknown sort 'newest'"):
        git_env.catalog.search("module", sort="newest")


def test_pagination(git_env: CatalogEnv) -> None:
    full = all_ids(git_env.catalog, "module", sort="title")
    assert len(full) == 14
    pages = []
    for page in (1, 2, 3, 4):
        r = git_env.catalog.search("module", sort="title", page=page, per_page=4)
        assert (r["total"], r["pages"], r["page"], r["per_page"]) == (14, 4, page, 4)
        pages += [it["id"] for it in r["items"]]
        assert len(r["items"]) == (2 if page == 4 else 4)
    assert pages == full
    beyond = git_env.catalog.search("module", sort="title", page=5, per_page=4)
    assert beyond["items"] == [] and beyond["total"] == 14
    one = git_env.catalog.search("module", per_page=14)
    assert (one["pages"], len(one["items"])) == (1, 14)
    none = git_env.catalog.search("module", q="nosuchwordanywhere")
    assert (none["total"], none["pages"], none["items"]) == (0, 1, [])


# -- facets ---------------------------------------------------------------------------


def test_facets(git_env: CatalogEnv, docs: dict) -> None:
    for kind, source in (("module", MODULES_SOURCE), ("tool", TOOLS_SOURCE)):
        f = git_env.catalog.facets(kind)  # type: ignore[arg-type]
        mine = [d for (k, _), d in docs.items() if k == kind]
        for facet, key in (("tasks", "tasks"), ("categories", "categories"), ("libraries", "libraries"),
                           ("data_types", "data-type"), ("tags", "tags")):
            want = {str(v) for d in mine for v in d.get(key) or []}
            assert f[facet] == sorted(want, key=str.lower), (kind, facet)
        assert f["sources"] == [source]
    assert "Computer Vision" in git_env.catalog.facets("module")["tasks"]
    assert git_env.catalog.facets("tool")["categories"] == ["AI4 inference", "AI4 tools"]


# -- collisions -----------------------------------------------------------------------


@pytest.fixture
def local_folder(tmp_path: Path) -> SourceConfig:
    """A folder source whose 'ai4os-demo-app' is in fact the YOLO metadata."""
    folder = tmp_path / "local" / "modules" / "ai4os-demo-app"
    folder.mkdir(parents=True)
    shutil.copy(DATA / "modules" / "ai4os-yolo-torch.yml", folder / "ai4-metadata.yml")
    return SourceConfig(name="local", type="folder", path=str(tmp_path / "local"))


def test_first_source_wins_a_collision(git_env: CatalogEnv, local_folder: SourceConfig, db_url: str) -> None:
    catalog = Catalog([local_folder, *git_env.sources], git_env.cache, db_url)  # reads the refreshed cache
    item = catalog.get("module", "ai4os-demo-app")
    assert item is not None and item.source == "local" and item.title == "YOLO models"
    clash = [e for e in catalog.errors() if e.item == "ai4os-demo-app"]
    assert len(clash) == 1
    assert clash[0].source == MODULES_SOURCE
    assert "'local'" in clash[0].reason and "comes first" in clash[0].reason
    assert all_ids(catalog, "module").count("ai4os-demo-app") == 1
    assert len(all_ids(catalog, "module")) == 14


def test_collision_in_the_other_order(git_env: CatalogEnv, local_folder: SourceConfig, db_url: str) -> None:
    catalog = Catalog([*git_env.sources, local_folder], git_env.cache, db_url)
    item = catalog.get("module", "ai4os-demo-app")
    assert item is not None and item.source == MODULES_SOURCE and item.title == "ai4os-demo-app"
    [clash] = [e for e in catalog.errors() if e.item == "ai4os-demo-app"]
    assert clash.source == "local" and f"'{MODULES_SOURCE}'" in clash.reason


def test_same_id_of_another_kind_is_no_collision(git_env: CatalogEnv, tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "t" / "tools" / "ai4os-demo-app"
    folder.mkdir(parents=True)
    shutil.copy(DATA / "tools" / "ai4os-cvat.yml", folder / "ai4-metadata.yml")
    catalog = Catalog([*git_env.sources, SourceConfig(name="t", type="folder", path=str(tmp_path / "t"))],
                      git_env.cache, db_url)
    assert catalog.get("tool", "ai4os-demo-app") is not None
    assert catalog.get("module", "ai4os-demo-app") is not None
    assert not [e for e in catalog.errors() if e.item == "ai4os-demo-app"]


def test_catalog_sources_win_over_a_publication(git_env: CatalogEnv, db_url: str) -> None:
    """A source added after a publication with the same id: the source's item is shown, the clash reported."""
    data = raw("modules/ai4os-demo-app.yml")
    pub.publish(db_url, pub.PublishRequest(id="ai4os-yolo-torch", metadata=data, visibility="private"),
                kind="module", owner="alice", role="advanced", vo=None, resolve_package=None, existing_ids=set())
    catalog = Catalog(git_env.sources, git_env.cache, db_url)
    item = catalog.get("module", "ai4os-yolo-torch")
    assert item is not None and item.source == MODULES_SOURCE
    [clash] = [e for e in catalog.errors() if e.item == "ai4os-yolo-torch"]
    assert clash.source == "published" and f"'{MODULES_SOURCE}'" in clash.reason
