"""A small client of JupyterHub's REST API, used by the platform service, the launcher and the CLI."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import httpx


class HubError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HubClient:
    def __init__(self, api_url: str | None = None, token: str | None = None, timeout: float = 30) -> None:
        self.api_url = (api_url or os.environ["JUPYTERHUB_API_URL"]).rstrip("/")
        self.token = token or os.environ["JUPYTERHUB_API_TOKEN"]
        self.timeout = timeout

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            r = await client.request(
                method,
                f"{self.api_url}{path}",
                headers={"Authorization": f"token {self.token}"},
                **kwargs,
            )
        if r.status_code >= 400:
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text
            raise HubError(r.status_code, message)
        return r.json() if r.content else None

    @staticmethod
    def server_path(user: str, server: str = "") -> str:
        u = quote(user, safe="")
        return f"/users/{u}/servers/{quote(server, safe='')}" if server else f"/users/{u}/server"

    async def start_server(self, user: str, server: str = "", options: dict[str, Any] | None = None) -> None:
        await self.request("POST", self.server_path(user, server), json=options or {})

    async def stop_server(self, user: str, server: str = "") -> None:
        await self.request("DELETE", self.server_path(user, server))

    async def ensure_user(self, user: str, admin: bool = False) -> dict[str, Any]:
        try:
            return await self.request("GET", f"/users/{quote(user, safe='')}")
        except HubError as e:
            if e.status != 404:
                raise
        await self.request("POST", "/users", json={"usernames": [user], "admin": admin})
        return await self.request("GET", f"/users/{quote(user, safe='')}")

    async def new_token(
        self, user: str, note: str, expires_in: int | None = None, scopes: list[str] | None = None
    ) -> str:
        return (await self.new_token_model(user, note, expires_in, scopes))["token"]

    async def new_token_model(
        self, user: str, note: str, expires_in: int | None = None, scopes: list[str] | None = None
    ) -> dict[str, Any]:
        """The hub's token model: ``token`` (shown only now) and ``id`` (what revokes it later)."""
        body: dict[str, Any] = {"note": note}
        if scopes:
            body["scopes"] = scopes
        if expires_in:
            body["expires_in"] = expires_in
        return await self.request("POST", f"/users/{quote(user, safe='')}/tokens", json=body)

    async def revoke_token(self, user: str, token_id: str) -> bool:
        """Delete ``user``'s token ``token_id``; False when the hub no longer has it (expired, deleted)."""
        try:
            await self.request("DELETE", f"/users/{quote(user, safe='')}/tokens/{quote(token_id, safe='')}")
        except HubError as e:
            if e.status == 404:
                return False
            raise
        return True
