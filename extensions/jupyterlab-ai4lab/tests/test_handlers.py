"""The server extension in a real Jupyter server, against a real HTTP server as the platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from conftest import TOKEN


async def fetch_error(jp_fetch: Any, *path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*path, **kw)
    return e.value.code, json.loads(e.value.response.body)


async def test_forwards_with_the_session_token(jp_fetch: Any, seen: list[dict[str, Any]]) -> None:
    r = await jp_fetch("ai4lab", "api", "me")
    assert json.loads(r.body) == {"name": "alice", "role": "intermediate"}
    assert seen[-1]["auth"] == f"token {TOKEN}" and seen[-1]["path"] == "/services/ai4lab/me"
    r = await jp_fetch("ai4lab", "api", "deployments", params={"kind": "training", "_xsrf": "not-for-the-platform"})
    assert json.loads(r.body)[0]["id"] == "d1" and seen[-1]["path"] == "/services/ai4lab/deployments?kind=training"


async def test_platform_reasons_pass_through_readably(jp_fetch: Any) -> None:
    code, body = await fetch_error(jp_fetch, "ai4lab", "api", "deployments", "other")
    assert (code, body) == (404, {"detail": "no such deployment", "status": 404})
    code, body = await fetch_error(jp_fetch, "ai4lab", "api", "deployments", method="POST", body="{}")
    assert (code, body["detail"]) == (422, "kind: Field required")
    code, body = await fetch_error(jp_fetch, "ai4lab", "api", "deployments", "d2", "predict", method="POST", body="")
    assert (code, body["detail"]) == (400, "cannot read 'notes.txt' as an image")
    code, body = await fetch_error(jp_fetch, "ai4lab", "api", "deployments", "d3", "predict", method="POST", body="")
    assert (code, body["detail"]) == (400, "missing field image")
    code, body = await fetch_error(jp_fetch, "ai4lab", "api", "crash")
    assert code == 500 and body["detail"] == "the platform API answered 500: Internal Server Error Traceback ..."
    assert "<" not in body["detail"]


async def test_uploads_and_downloads_keep_their_bytes(jp_fetch: Any, seen: list[dict[str, Any]]) -> None:
    r = await jp_fetch("ai4lab", "api", "storage", "datasets", "my data.csv", method="PUT", body=b"\x00\x01binary")
    assert json.loads(r.body) == {"path": "datasets/my%20data.csv", "size": 8}
    assert seen[-1]["body"] == b"\x00\x01binary"
    r = await jp_fetch("ai4lab", "api", "storage", "t.csv")
    assert r.body == b"a,b\n1,2\n" and r.headers["Content-Disposition"] == 'attachment; filename="t.csv"'


async def test_answers_that_are_not_json_keep_their_type(jp_fetch: Any) -> None:
    """A module answering a PNG (its DEEPaaS ``accept``): bytes and content type as the platform sent them."""
    from tests.conftest import PNG

    r = await jp_fetch("ai4lab", "api", "catalog", "modules", "demo", "try", method="POST", body=b"",
                       headers={"Accept": "image/png"})
    assert r.body == PNG and r.headers["Content-Type"] == "image/png"
    r = await jp_fetch("ai4lab", "api", "storage", "t.csv")
    assert r.headers["Content-Type"] == "application/octet-stream"


async def test_live_logs_stream_as_server_sent_events(jp_fetch: Any) -> None:
    r = await jp_fetch("ai4lab", "api", "deployments", "d1", "logs", params={"follow": "1"})
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.body.decode() == 'data: epoch 1\n\ndata: epoch 2\n\nevent: end\ndata: {"status": "succeeded"}\n\n'


async def test_config_for_the_panels(jp_fetch: Any, platform_api: str) -> None:
    r = json.loads((await jp_fetch("ai4lab", "config")).body)
    assert r["configured"] is True and r["api_url"] == platform_api and r["mlflow_url"] == "http://mlflow.example/x"


async def test_open_in_ide_unpacks_into_the_workspace(jp_fetch: Any, jp_root_dir: Path) -> None:
    r = await jp_fetch("ai4lab", "open-in-ide", method="POST", body=json.dumps({"item": "demo"}))
    assert r.code == 201
    assert json.loads(r.body) == {"folder": "demo", "files": ["demo/demo/__init__.py", "demo/pyproject.toml"]}
    assert (jp_root_dir / "demo" / "demo" / "__init__.py").read_text() == "x = 1\n"
    code, body = await fetch_error(jp_fetch, "ai4lab", "open-in-ide", method="POST", body=json.dumps({"item": "demo"}))
    assert code == 409 and "already exists in your workspace" in body["detail"]
    code, body = await fetch_error(jp_fetch, "ai4lab", "open-in-ide", method="POST",
                                   body=json.dumps({"item": "remote-only"}))
    assert (code, body["detail"]) == (400, "remote-only has no package on this platform")
    code, body = await fetch_error(jp_fetch, "ai4lab", "open-in-ide", method="POST",
                                   body=json.dumps({"item": "../etc"}))
    assert code == 400 and sorted(p.name for p in jp_root_dir.iterdir()) == ["demo"]


async def test_unauthenticated_callers_are_refused(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("ai4lab", "api", "me", headers={"Authorization": ""})
    assert e.value.code == 403


class TestPlatformDown:
    @pytest.fixture
    def jp_server_config(self) -> dict[str, Any]:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: nothing listens there
        return {"ServerApp": {"jpserver_extensions": {"jupyterlab_ai4lab": True}},
                "Ai4labConfig": {"api_url": f"http://127.0.0.1:{port}/services/ai4lab", "api_token": TOKEN}}

    async def test_a_platform_that_does_not_answer_is_a_sentence(self, jp_fetch: Any) -> None:
        code, body = await fetch_error(jp_fetch, "ai4lab", "api", "me")
        assert code == 502 and body["detail"].startswith("the platform API at http://127.0.0.1:")
        assert "cannot be reached (ConnectError)" in body["detail"]


class TestNotStartedByAi4lab:
    @pytest.fixture
    def jp_server_config(self) -> dict[str, Any]:
        return {"ServerApp": {"jpserver_extensions": {"jupyterlab_ai4lab": True}}, "Ai4labConfig": {"api_url": ""}}

    async def test_without_a_platform_the_panels_are_told_why(self, jp_fetch: Any) -> None:
        code, body = await fetch_error(jp_fetch, "ai4lab", "api", "me")
        assert code == 503 and "AI4LAB_API_URL is not set" in body["detail"]
        assert json.loads((await jp_fetch("ai4lab", "config")).body)["configured"] is False
