"""ai4lab.core.process_tokens: the deployment keeps its token's id, and every way of ending revokes the token.

The hub here is a stand-in that records calls (the real hub is in
tests/integration/test_process_tokens.py): what is tested is the bookkeeping.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from ai4lab.core import db
from ai4lab.core import deployments as deps
from ai4lab.client.hub import HubError
from ai4lab.core.process_tokens import MLFLOW_SCOPES, issue_process_token, revoke_ended_tokens


class RecordingHub:
    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.refuse = False

    async def new_token_model(self, user: str, note: str, expires_in: int | None = None,
                              scopes: list[str] | None = None) -> dict[str, Any]:
        model = {"id": f"a{len(self.tokens)}", "token": secrets.token_hex(16), "user": user, "note": note,
                 "scopes": scopes, "expires_in": expires_in}
        self.tokens[model["id"]] = model
        return model

    async def revoke_token(self, user: str, token_id: str) -> bool:
        if self.refuse:
            raise HubError(503, "the hub is restarting")
        return self.tokens.pop(token_id, None) is not None


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'ai4lab.sqlite'}"
    db.upgrade(u)
    return u


async def test_issued_token_is_scoped_and_only_its_id_is_kept(url: str) -> None:
    hub = RecordingHub()
    dep = deps.create(url, owner="tina", kind="training", status="starting")
    token = await issue_process_token(url, dep, "training", hub=hub)  # type: ignore[arg-type]
    (model,) = hub.tokens.values()
    assert model["token"] == token and model["user"] == "tina" and model["note"] == f"training {dep.id}"
    assert model["scopes"] == MLFLOW_SCOPES and model["expires_in"]
    state = deps.get(url, dep.id).backend_state  # type: ignore[union-attr]
    assert state == {deps.HUB_TOKEN_KEY: model["id"]}
    # the backend's state replaces the old one when the process starts: the id stays
    deps.set_status(url, dep.id, "running", backend_state={"pid": 4242, "log_path": "x.log"})
    state = deps.get(url, dep.id).backend_state  # type: ignore[union-attr]
    assert state == {"pid": 4242, "log_path": "x.log", deps.HUB_TOKEN_KEY: model["id"]}
    assert token not in str(state) and token not in str(deps.get(url, dep.id).to_dict())  # type: ignore[union-attr]


@pytest.mark.parametrize("final", ["succeeded", "failed", "stopped", "cancelled"])
async def test_every_end_revokes_and_running_ones_keep_theirs(url: str, final: str) -> None:
    hub = RecordingHub()
    ending = deps.create(url, owner="tina", kind="training", status="running")
    running = deps.create(url, owner="tina", kind="tool", status="running")
    await issue_process_token(url, ending, "training", hub=hub)  # type: ignore[arg-type]
    await issue_process_token(url, running, "flower", hub=hub)  # type: ignore[arg-type]
    assert await revoke_ended_tokens(url, hub=hub) == []  # type: ignore[arg-type]
    assert len(hub.tokens) == 2

    deps.set_status(url, ending.id, final, "the end")
    assert await revoke_ended_tokens(url, hub=hub) == [ending.id]  # type: ignore[arg-type]
    assert [t["note"] for t in hub.tokens.values()] == [f"flower {running.id}"]
    assert deps.HUB_TOKEN_KEY not in deps.get(url, ending.id).backend_state  # type: ignore[union-attr]
    assert await revoke_ended_tokens(url, hub=hub) == []  # type: ignore[arg-type]


async def test_a_hub_that_refuses_is_asked_again_and_a_gone_token_counts_as_revoked(url: str) -> None:
    hub = RecordingHub()
    dep = deps.create(url, owner="tina", kind="batch", status="running")
    await issue_process_token(url, dep, "batch", hub=hub)  # type: ignore[arg-type]
    deps.set_status(url, dep.id, "failed", "the platform was stopped during the training")  # the launcher's sweep
    hub.refuse = True
    assert await revoke_ended_tokens(url, hub=hub) == []  # type: ignore[arg-type]
    assert deps.HUB_TOKEN_KEY in deps.get(url, dep.id).backend_state  # type: ignore[union-attr]
    hub.refuse = False
    hub.tokens.clear()  # expired meanwhile
    assert await revoke_ended_tokens(url, hub=hub) == [dep.id]  # type: ignore[arg-type]
