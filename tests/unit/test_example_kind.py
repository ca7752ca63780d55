"""Adding a deployment kind is one module and one registry line: a small kind defined here, not shipped.

The ``note`` kind below is the whole of what a new kind needs: its request
model (a ``kind`` literal and its fields) and a :class:`Lifecycle` subclass.
The API then creates, lists, reads, stops and shows the logs of notes, checks
their fields (422 naming the field), hides them from other users (404), and
documents their body in the OpenAPI schema, without a line of the API changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from pydantic import Field

from ai4lab.api.app import create_app
from ai4lab.api.auth import HubAuthenticator, HubUser
from ai4lab.core import db
from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment
from ai4lab.core.settings import Settings
from ai4lab.deploy.lifecycle import Caller, DeploymentRequest, Lifecycle
from ai4lab.deploy.registry import LIFECYCLES


# -- the new kind: one module's worth --------------------------------------------------------------
class NoteRequest(DeploymentRequest):
    kind: Literal["note"]
    text: str = Field(min_length=1, description="what the note says")


class Notes(Lifecycle):
    """A note: recorded, running until stopped; its log is its text."""

    kinds: ClassVar[tuple[str, ...]] = ("note",)
    backend: ClassVar[str] = "local"
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = (NoteRequest,)

    async def create(self, request: NoteRequest, caller: Caller) -> Deployment:
        return deps.create(self.settings.db_url, owner=caller.name, kind="note", name=request.text[:40],
                           spec={"text": request.text}, status="running", vo=caller.vo)

    async def logs(self, dep: Deployment, tail: int | None = None) -> str:
        return dep.spec["text"] + "\n"


# -- the registry line ------------------------------------------------------------------------------
WITH_NOTES = [*LIFECYCLES, Notes]


class TokenIsName(HubAuthenticator):
    """``Authorization: token <name>`` is that user (``admin`` is an admin): the API's logic, not the hub's."""

    async def user_for(self, request: Request) -> HubUser:
        name = request.headers["authorization"].split()[1]
        return HubUser(name=name, admin=name == "admin", token=name, model={})


@pytest.fixture
def client(tmp_path: Path) -> Any:
    settings = Settings(state_dir=tmp_path / "state")
    db.upgrade(settings.db_url)
    app = create_app(settings, TokenIsName(prefix="/api"), lifecycles=WITH_NOTES)
    with TestClient(app) as c:
        yield c


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"token {name}"}


def test_a_new_kind_runs_through_the_whole_api(client: TestClient) -> None:
    r = client.post("/api/deployments", json={"kind": "note", "text": "hello"}, headers=as_("ann"))
    assert r.status_code == 201, r.text
    note = r.json()
    assert (note["kind"], note["status"], note["owner"], note["backend"]) == ("note", "running", "ann", "local")
    assert [d["id"] for d in client.get("/api/deployments", headers=as_("ann")).json()] == [note["id"]]
    assert client.get(f"/api/deployments/{note['id']}/logs", headers=as_("ann")).text == "hello\n"
    # another user does not see it; an admin does
    assert client.get(f"/api/deployments/{note['id']}", headers=as_("bob")).status_code == 404
    assert client.delete(f"/api/deployments/{note['id']}", headers=as_("bob")).status_code == 404
    assert client.get(f"/api/deployments/{note['id']}", headers=as_("admin")).status_code == 200
    stopped = client.delete(f"/api/deployments/{note['id']}", headers=as_("ann")).json()
    assert stopped["status"] == "stopped" and stopped["status_reason"] == "stopped by ann"


def test_its_fields_are_checked_and_documented(client: TestClient) -> None:
    r = client.post("/api/deployments", json={"kind": "note", "txt": "typo"}, headers=as_("ann"))
    assert r.status_code == 422
    errors = {tuple(e["loc"]): e["msg"] for e in r.json()["detail"]}
    assert errors[("body", "txt")] == "unknown field 'txt' for kind 'note': use text"
    assert ("body", "text") in errors  # missing
    r = client.post("/api/deployments", json={"kind": "notes", "text": "x"}, headers=as_("ann"))
    assert r.status_code == 400 and "unknown deployment kind 'notes'" in r.json()["detail"]
    assert "note" in r.json()["detail"] and "training" in r.json()["detail"]
    assert client.get("/api/deployments", headers=as_("ann")).json() == []  # nothing recorded
    body = client.get("/api/openapi.json").json()["paths"]["/api/deployments"]["post"]["requestBody"]
    mapping = body["content"]["application/json"]["schema"]["discriminator"]["mapping"]
    assert mapping["note"] == "#/components/schemas/NoteRequest" and "training" in mapping


def test_without_its_registry_line_the_kind_does_not_exist(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    db.upgrade(settings.db_url)
    with TestClient(create_app(settings, TokenIsName(prefix="/api"))) as c:
        r = c.post("/api/deployments", json={"kind": "note", "text": "hello"}, headers=as_("ann"))
        assert r.status_code == 400 and "unknown deployment kind 'note'" in r.json()["detail"]
