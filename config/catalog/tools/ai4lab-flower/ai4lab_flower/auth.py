"""Per-deployment bearer tokens on the Fleet API (the SuperLink side; ``ai4lab/flower/node.py`` sends them).

Why not flwr's own SuperNode authentication: in flwr 1.42 it needs TLS
certificates on both ends plus an ECDSA key pair per node registered through the
Control API; a token a user pastes into a notebook or a script on another site
is what the platform (like AI4OS's ``ai4flwr``) hands out. The Fleet API is
protobuf over HTTP since flwr 1.40, so the check is an ASGI middleware in front
of the SuperLink app and, on the client, a ``ProtobufClientInterceptor`` adding
``Authorization: Bearer <token>`` to each Fleet request.

The server only knows SHA-256 hashes of the valid tokens (a file the platform
rewrites on rotation; re-read when it changes), and never logs a token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

#: Only these paths are served to clients: the Fleet API (and a health probe).
FLEET_PREFIX = "/v1/fleet/"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenGate:
    """ASGI middleware: Fleet requests need a valid bearer token; the Control and Runtime APIs are not exposed."""

    def __init__(self, app: Any, hashes_file: Path) -> None:
        self.app = app
        self.hashes_file = Path(hashes_file)
        self._mtime: int | None = None
        self._hashes: list[str] = []
        self.refused = 0

    def _valid_hashes(self) -> list[str]:
        try:
            mtime = os.stat(self.hashes_file).st_mtime_ns
        except OSError:
            return []
        if mtime != self._mtime:
            try:
                self._hashes = list(json.loads(self.hashes_file.read_text()))
                self._mtime = mtime
            except (OSError, ValueError):
                return self._hashes
        return self._hashes

    def allowed(self, authorization: bytes) -> bool:
        if not authorization.lower().startswith(b"bearer "):
            return False
        digest = token_hash(authorization[7:].strip().decode(errors="replace"))
        return any(hmac.compare_digest(digest, h) for h in self._valid_hashes())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == "/health":
            return await _reply(send, 200, b'{"status": "ok"}')
        if not path.startswith(FLEET_PREFIX):
            return await _reply(send, 404, b'{"detail": "not found"}')
        headers = dict(scope.get("headers") or [])
        if not self.allowed(headers.get(b"authorization", b"")):
            self.refused += 1
            return await _reply(send, 401, b'{"detail": "a valid token of this Flower deployment is required"}')
        return await self.app(scope, receive, send)


class RuntimeOnly:
    """ASGI middleware for the loopback listener: only the Runtime API (task-token authenticated) is served.

    The SuperLink app also carries the Control API (submit, list and stop runs);
    nothing of this server needs it, so no listener exposes it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope.get("path", "").startswith("/v1/runtime/"):
            return await _reply(send, 404, b'{"detail": "not found"}')
        return await self.app(scope, receive, send)


async def _reply(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
