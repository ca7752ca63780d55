"""Publishing: validation of requests and who sees a published item (private, VO, public)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ai4lab.core.errors import PlatformError
from ai4lab.catalog import Catalog
from ai4lab.catalog import publish as pub
from ai4lab.catalog.registry import ANONYMOUS, Viewer
from ai4lab.core.db import PublishedItem, session_scope
from tests.catalog.helpers import DATA, all_ids, raw

ALICE = Viewer(name="alice", vo="vo.imagine-ai.eu")
BOB_SAME_VO = Viewer(name="bob", vo="vo.imagine-ai.eu")
CAROL_OTHER_VO = Viewer(name="carol", vo="vo.other.eu")
DAVE_NO_VO = Viewer(name="dave")
ADMIN = Viewer(name="root", admin=True)


def metadata(**changes: Any) -> dict[str, Any]:
    data = raw("modules/ai4os-demo-app.yml")
    data["title"] = "Alice's demo"
    data.update(changes)
    return data


def do_publish(db_url: str, storage: Path | None = None, *, owner: str = "alice", role: str = "intermediate",
               vo: str | None = "vo.imagine-ai.eu", kind: str = "module", existing: set[str] | None = None,
               **req: Any) -> PublishedItem:
    req.setdefault("id", "alice-demo")
    if "metadata" not in req and "metadata_yaml" not in req:
        req["metadata"] = metadata()
    return pub.publish(
        db_url, pub.PublishRequest(**req), kind=kind, owner=owner, role=role, vo=vo,
        resolve_package=lambda p: (storage or Path("/nonexistent")) / p, existing_ids=existing or set(),
    )


@pytest.fixture
def catalog(db_url: str, tmp_path: Path) -> Catalog:
    return Catalog([], tmp_path / "cache", db_url)


def sees(catalog: Catalog, viewer: Viewer, item_id: str = "alice-demo") -> bool:
    in_get = catalog.get("module", item_id, viewer) is not None
    in_search = item_id in [it["id"] for it in catalog.search("module", viewer=viewer)["items"]]
    in_text_search = item_id in [it["id"] for it in catalog.search("module", q="alice", viewer=viewer)["items"]]
    assert in_get == in_search == in_text_search, (viewer, in_get, in_search, in_text_search)
    return in_get


# -- visibility -----------------------------------------------------------------------


def test_private_item_is_seen_by_its_owner_and_admins(db_url: str, catalog: Catalog) -> None:
    row = do_publish(db_url, visibility="private")
    assert (row.id, row.owner, row.visibility, row.vo) == ("alice-demo", "alice", "private", "vo.imagine-ai.eu")
    catalog.reload()
    assert sees(catalog, ALICE) and sees(catalog, ADMIN)
    assert not sees(catalog, ANONYMOUS)
    assert not sees(catalog, BOB_SAME_VO)  # same VO, but private
    assert not sees(catalog, DAVE_NO_VO)
    assert catalog.facets("module", ANONYMOUS)["sources"] == []
    assert catalog.facets("module", ALICE)["sources"] == ["published"]
    item = catalog.get("module", "alice-demo", ALICE)
    assert item is not None
    assert (item.source, item.owner, item.visibility, item.title) == ("published", "alice", "private", "Alice's demo")
    assert item.run.docker_image == "ai4oshub/ai4os-demo-app"  # from links.docker_image


def test_vo_item_is_seen_by_members_of_the_vo(db_url: str, catalog: Catalog) -> None:
    do_publish(db_url, visibility="vo")
    catalog.reload()
    assert sees(catalog, ALICE) and sees(catalog, BOB_SAME_VO) and sees(catalog, ADMIN)
    assert not sees(catalog, CAROL_OTHER_VO)
    assert not sees(catalog, DAVE_NO_VO)
    assert not sees(catalog, ANONYMOUS)


def test_promoted_item_is_public(db_url: str, catalog: Catalog) -> None:
    do_publish(db_url, visibility="private")
    catalog.reload()
    assert not sees(catalog, ANONYMOUS)
    row = pub.set_visibility(db_url, "alice-demo", "public")
    assert row is not None and row.visibility == "public"
    assert not sees(catalog, ANONYMOUS)  # not before reload()
    catalog.reload()
    for viewer in (ANONYMOUS, ALICE, BOB_SAME_VO, CAROL_OTHER_VO, DAVE_NO_VO, ADMIN):
        assert sees(catalog, viewer)
    assert catalog.facets("module")["sources"] == ["published"]
    assert pub.set_visibility(db_url, "no-such-item", "public") is None
    with pytest.raises(PlatformError):
        pub.set_visibility(db_url, "alice-demo", "everyone")


def test_unpublish(db_url: str, catalog: Catalog) -> None:
    do_publish(db_url)
    assert pub.unpublish(db_url, "alice-demo") is True
    assert pub.unpublish(db_url, "alice-demo") is False
    catalog.reload()
    assert catalog.get("module", "alice-demo", ADMIN) is None


def test_owner_republishes(db_url: str, catalog: Catalog) -> None:
    do_publish(db_url, visibility="private")
    do_publish(db_url, visibility="vo", metadata=metadata(title="Alice's demo v2"),
               docker_image="registry.example.org/alice/demo:1.2", lineage={"parent": "ai4os-demo-app"})
    catalog.reload()
    item = catalog.get("module", "alice-demo", BOB_SAME_VO)
    assert item is not None and item.title == "Alice's demo v2"
    assert (item.run.docker_image, item.run.docker_tag) == ("registry.example.org/alice/demo", "1.2")
    assert item.lineage == {"parent": "ai4os-demo-app"}
    assert len(all_ids(catalog, "module", viewer=ADMIN)) == 1


def test_metadata_as_yaml_text_and_local_package(db_url: str, catalog: Catalog, tmp_path: Path) -> None:
    pkg = tmp_path / "storage" / "code" / "demo"
    pkg.mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1"\n[project.entry-points."deepaas.v2.model"]\nalice_demo = "demo.api"\n')
    text = (DATA / "tools" / "ai4os-cvat.yml").read_text()
    row = do_publish(db_url, tmp_path / "storage", id="my-cvat", kind="tool", metadata_yaml=text,
                     package_path="code/demo")
    assert row.package_path == str(pkg)
    catalog.reload()
    item = catalog.get("tool", "my-cvat", ALICE)
    assert item is not None and item.kind == "tool" and item.title == yaml.safe_load(text)["title"]
    assert (item.run.package_path, item.run.entry_point) == (str(pkg), "alice_demo")
    assert catalog.get("module", "my-cvat", ALICE) is None


def test_v1_metadata_is_converted_when_published(db_url: str, catalog: Catalog) -> None:
    v1 = raw("legacy/ai4os-demo-app.metadata.json")
    do_publish(db_url, metadata=v1)
    catalog.reload()
    item = catalog.get("module", "alice-demo", ALICE)
    assert item is not None and isinstance(item.description, str) and item.title == v1["title"]


# -- refused requests -----------------------------------------------------------------


def refused(db_url: str, **kw: Any) -> PlatformError:
    with pytest.raises(PlatformError) as e:
        do_publish(db_url, **kw)
    return e.value


def test_basic_role_cannot_publish(db_url: str) -> None:
    e = refused(db_url, role="basic")
    assert e.status == 403 and "basic" in str(e)
    assert do_publish(db_url, role="advanced").owner == "alice"


@pytest.mark.parametrize("bad_id", ["Alice-Demo", "a", "-demo", "my demo", "demo/x", "x" * 101, ""])
def test_bad_ids(db_url: str, bad_id: str) -> None:
    e = refused(db_url, id=bad_id)
    assert e.status == 400 and "invalid id" in str(e)


def test_invalid_metadata_gives_the_validators_reason(db_url: str) -> None:
    data = metadata()
    del data["tasks"]
    e = refused(db_url, metadata=data)
    assert e.status == 400 and "invalid metadata" in str(e) and "'tasks' is a required property" in str(e)
    e = refused(db_url, metadata=metadata(title=42))
    assert "title" in str(e) and "is not of type 'string'" in str(e)


def test_metadata_text_that_does_not_parse(db_url: str) -> None:
    """Not a PlatformError: the API answers 400 'invalid metadata' for any ValueError."""
    with pytest.raises(ValueError, match="mapping values are not allowed here"):
        do_publish(db_url, metadata_yaml=(DATA / "modules" / "phyto-plankton-classification.yml").read_text())


def test_exactly_one_metadata_field(db_url: str) -> None:
    e = refused(db_url, metadata=metadata(), metadata_yaml="title: x")
    assert e.status == 400 and "exactly one" in str(e)
    with pytest.raises(PlatformError, match="exactly one"):
        pub.publish(db_url, pub.PublishRequest(id="alice-demo"), kind="module", owner="alice",
                    role="intermediate", vo=None, resolve_package=None, existing_ids=set())


def test_no_way_to_run_it(db_url: str) -> None:
    data = metadata()
    del data["links"]["docker_image"]
    e = refused(db_url, metadata=data)
    assert e.status == 400 and "say how to run it" in str(e)
    assert do_publish(db_url, metadata=data, docker_image="alice/demo").docker_image == "alice/demo"


def test_package_path_without_a_package(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    e = refused(db_url, storage=tmp_path, package_path="notes")
    assert e.status == 400 and "holds no Python package" in str(e)


def test_visibility_rules(db_url: str) -> None:
    e = refused(db_url, visibility="vo", vo=None)
    assert e.status == 400 and "no VO" in str(e)
    e = refused(db_url, visibility="public")
    assert e.status == 400 and "an admin promotes" in str(e)


def test_id_taken_by_another_users_item(db_url: str) -> None:
    do_publish(db_url, owner="alice")
    e = refused(db_url, owner="bob")
    assert e.status == 409 and "another user" in str(e)


def test_id_taken_by_a_catalog_item(db_url: str) -> None:
    e = refused(db_url, id="ai4os-demo-app", existing={"ai4os-demo-app", "ai4os-yolo-torch"})
    assert e.status == 409 and "already in the catalog" in str(e)


def test_id_of_another_kind(db_url: str) -> None:
    do_publish(db_url, kind="module")
    e = refused(db_url, kind="tool")
    assert e.status == 409 and "is a module, not a tool" in str(e)


def test_refused_requests_store_nothing(db_url: str) -> None:
    for kw in ({"role": "basic"}, {"id": "Bad"}, {"metadata": {"title": "x"}}, {"visibility": "vo", "vo": None}):
        with pytest.raises(PlatformError):
            do_publish(db_url, **kw)
    with session_scope(db_url) as s:
        assert s.query(PublishedItem).count() == 0


def test_broken_pyproject_in_a_published_package_does_not_break_the_catalog(
    db_url: str, catalog: Catalog, tmp_path: Path
) -> None:
    pkg = tmp_path / "storage" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "pyproject.toml").write_text("[project\nname = 'x'\n")
    with pytest.raises(PlatformError, match="not valid TOML"):
        do_publish(db_url, tmp_path / "storage", id="broken-pkg", package_path="pkg")
    # a package broken after it was published does not break the catalog either
    (pkg / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    do_publish(db_url, tmp_path / "storage", id="broken-pkg", package_path="pkg")
    (pkg / "pyproject.toml").write_text("[project\nname = 'x'\n")
    do_publish(db_url, id="fine", visibility="vo")
    catalog.reload()
    assert catalog.get("module", "fine", BOB_SAME_VO) is not None
    assert any(e.item == "broken-pkg" and "not valid TOML" in e.reason for e in catalog.errors())
