"""pytest-jupyter's real Jupyter server with the extension, and a small real HTTP server
standing in for the platform API (it answers like the platform and records what it got)."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]
TOKEN = "session-token-of-alice"
PREFIX = "/services/ai4lab"


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))


def package_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in {"pyproject.toml": b"[project]\nname='demo'\n", "demo/__init__.py": b"x = 1\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class PlatformHandler(BaseHTTPRequestHandler):
    """Answers a few platform API paths the way the real API does."""

    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def reply(self, status: int, body: bytes | str | dict | list, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        data = data.encode() if isinstance(data, str) else data
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                          "ctype": self.headers.get("Content-Type"), "body": body})
        if self.headers.get("Authorization") != f"token {TOKEN}":
            return self.reply(401, {"detail": "a hub token is required", "status": 401})
        path = self.path.removeprefix(PREFIX)
        if path == "/me":
            return self.reply(200, {"name": "alice", "role": "intermediate"})
        if path.startswith("/deployments?"):
            return self.reply(200, [{"id": "d1", "kind": "training", "status": "running"}])
        if path == "/deployments" and self.command == "POST":
            return self.reply(422, {"detail": [{"loc": ["body", "kind"], "msg": "Field required", "type": "missing"}]})
        if path == "/deployments/d1/logs?follow=1":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for line in ("epoch 1", "epoch 2"):
                self.wfile.write(f"data: {line}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b'event: end\ndata: {"status": "succeeded"}\n\n')
            return None
        if path == "/deployments/other":
            return self.reply(404, {"detail": "no such deployment", "status": 404})
        if path == "/crash":
            return self.reply(500, "<html><body><h1>Internal Server Error</h1><pre>Traceback ...</pre></body></html>",
                              "text/html")
        if path == "/deployments/d2/predict":  # DEEPaaS (aiohttp) refusing an input, as forwarded
            return self.reply(400, "400: cannot read 'notes.txt' as an image", "text/plain")
        if path == "/deployments/d3/predict":
            return self.reply(400, {"code": 400, "message": "400: missing field image"})
        if path.startswith("/storage/"):
            if self.command == "PUT":
                return self.reply(200, {"path": path.removeprefix("/storage/"), "size": len(body)})
            return self.reply(200, b"a,b\n1,2\n", "application/octet-stream",
                              {"Content-Disposition": 'attachment; filename="t.csv"'})
        if path == "/catalog/modules/demo/try" and self.headers.get("Accept") == "image/png":
            return self.reply(200, PNG, "image/png")  # a module's answer that is not JSON
        if path == "/catalog/modules/demo/package":
            return self.reply(200, package_tar(), "application/gzip")
        if path == "/catalog/modules/remote-only/package":
            return self.reply(400, {"detail": "remote-only has no package on this platform", "status": 400})
        return self.reply(404, {"detail": f"no route {path}", "status": 404})

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


@pytest.fixture(scope="session")
def platform_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PlatformHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}{PREFIX}"
    server.shutdown()


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    PlatformHandler.seen.clear()
    return PlatformHandler.seen


@pytest.fixture
def jp_server_config(platform_api: str) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"jupyterlab_ai4lab": True}},
        "Ai4labConfig": {"api_url": platform_api, "api_token": TOKEN, "mlflow_url": "http://mlflow.example/x"},
    }
