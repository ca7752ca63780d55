"""CVAT annotations into the owner's storage with cvat-sdk, against the spec-checking fake CVAT."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from ai4lab.deploy.cvat_export import MANIFEST, ExportError, export_task_annotations
from tests.fakes.cvat import FakeCvat, FakeCvatServer

COCO = {"images": [{"id": 1, "file_name": "cat.jpg", "width": 10, "height": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 1, "name": "cat"}]}


@pytest.fixture(scope="module")
def cvat() -> Iterator[FakeCvatServer]:
    fake = FakeCvat("admin", "per-deployment-secret")
    fake.add_task(7, "Cats in the garden", ["cat"], COCO)
    with FakeCvatServer(fake) as server:
        yield server


def test_export_into_storage(cvat: FakeCvatServer, tmp_path) -> None:
    folder = export_task_annotations(cvat.address, ("admin", "per-deployment-secret"), 7, tmp_path,
                                     status_check_period=0.05)
    assert folder == tmp_path / "datasets" / "cvat-cats-in-the-garden-7"
    assert json.loads((folder / "annotations" / "instances_default.json").read_text()) == COCO
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["task_name"] == "Cats in the garden" and manifest["format"] == "COCO 1.0"
    seen = [(m, p) for m, p, _ in cvat.fake.requests_seen]
    assert ("POST", "/api/auth/login") in seen and ("POST", "/api/tasks/7/dataset/export") in seen
    assert ("GET", "/api/tasks/7/dataset") in seen  # the download, as CVAT 2.26 serves it
    export = next(q for m, p, q in cvat.fake.requests_seen if p == "/api/tasks/7/dataset/export")
    assert export["format"] == "COCO 1.0" and export["save_images"].lower() == "false"  # Django reads both
    with pytest.raises(ExportError, match="already exists"):
        export_task_annotations(cvat.address, ("admin", "per-deployment-secret"), 7, tmp_path,
                                     status_check_period=0.05)


def test_export_errors_are_clear(cvat: FakeCvatServer, tmp_path) -> None:
    with pytest.raises(ExportError, match="HTTP 404"):
        export_task_annotations(cvat.address, ("admin", "per-deployment-secret"), 99, tmp_path)
    with pytest.raises(ExportError, match="HTTP 400"):
        export_task_annotations(cvat.address, ("admin", "wrong"), 7, tmp_path)


def test_fake_checks_requests_against_the_spec(cvat: FakeCvatServer) -> None:
    r = httpx.post(f"{cvat.address}/api/tasks/7/dataset/export")  # no format
    assert r.status_code == 400 and "missing ['format']" in r.text
    r = httpx.get(f"{cvat.address}/api/taskz/7")
    assert r.status_code == 404 and "not a path of the CVAT API spec" in r.text
    r = httpx.post(f"{cvat.address}/api/auth/login", json={"username": "admin"})  # password required
    assert r.status_code == 400 and "'password' is a required property" in r.text


def test_export_does_not_follow_a_symlink_out_of_the_storage(cvat: FakeCvatServer, tmp_path) -> None:
    """datasets/ (or the dataset folder) replaced by a link elsewhere: refused, nothing written there."""
    from ai4lab.core.storage import StoragePathError

    storage, elsewhere = tmp_path / "alice", tmp_path / "state"
    storage.mkdir()
    elsewhere.mkdir()
    (storage / "datasets").symlink_to(elsewhere)
    with pytest.raises(StoragePathError, match="'datasets/cats' leaves your storage through a symlink"):
        export_task_annotations(cvat.address, ("admin", "per-deployment-secret"), 7, storage, name="cats",
                                status_check_period=0.05)
    (storage / "datasets").unlink()
    (storage / "datasets").mkdir()
    (storage / "datasets" / "cats").symlink_to(elsewhere / "cats")  # dangling: would be created
    with pytest.raises(StoragePathError, match="'datasets/cats' leaves your storage through a symlink"):
        export_task_annotations(cvat.address, ("admin", "per-deployment-secret"), 7, storage, name="cats",
                                status_check_period=0.05)
    assert list(elsewhere.iterdir()) == []
