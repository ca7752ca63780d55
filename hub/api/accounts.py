"""``/me``, ``/me/oidc-token``, ``/users``: who the caller is (role, VO, quota, provider token); all accounts."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (local aliases) as objects

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter
from pydantic import Field

from ai4lab import __version__
from ai4lab.api.answers import Account, Me, OidcToken, StorageWhere
from ai4lab.api.context import ApiContext, User
from ai4lab.client.hub import HubClient, HubError
from ai4lab.core import accounts, own_storage
from ai4lab.core.errors import PlatformError
from ai4lab.core.remote_storage import StorageBackend
from ai4lab.core.storage import storage_use


class OwnStorage(StorageBackend):
    """My own storage server: its URL is my storage itself (no folder per user below it)."""

    per_user_folder: bool = Field(default=False, description="keep my files in a folder of my name below the URL")


def build_router(api: ApiContext) -> APIRouter:
    settings = api.settings
    router = APIRouter(prefix=api.prefix, tags=["accounts"])

    @router.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @router.get("/me", summary="Who am I: name, role, admin flag and quota", response_model=Me)
    async def me(user: User) -> dict[str, Any]:
        caller = api.caller(user, max_age=0)
        return {
            "name": user.name,
            "admin": user.admin,
            "role": caller.role,
            "vo": caller.vo,
            "quota": settings.quotas[caller.role],
            "storage": await asyncio.to_thread(storage_use, settings, user.name, caller.role),
            "gpus": settings.gpus,
        }

    @router.get("/me/storage", summary="Where my storage is (the platform's or my own)", response_model=StorageWhere)
    async def my_storage(user: User) -> dict[str, Any]:
        return await asyncio.to_thread(own_storage.view, settings, user.name)

    @router.put(
        "/me/storage",
        summary="Connect my own S3 or WebDAV storage (checked with its credentials first)",
        response_model=StorageWhere,
    )
    async def connect_storage(backend: OwnStorage, user: User) -> dict[str, Any]:
        await asyncio.to_thread(own_storage.connect, settings, user.name, backend)
        return await asyncio.to_thread(own_storage.view, settings, user.name)

    @router.delete("/me/storage", summary="Go back to the platform's storage", response_model=StorageWhere)
    async def disconnect_storage(user: User) -> dict[str, Any]:
        if not await asyncio.to_thread(own_storage.disconnect, settings, user.name):
            raise PlatformError(404, "you have no storage of your own connected")
        return await asyncio.to_thread(own_storage.view, settings, user.name)

    @router.get(
        "/me/oidc-token",
        summary="My current access token at the OIDC provider, for sessions that outlive the one they started with",
        response_model=OidcToken,
    )
    async def oidc_token(user: User) -> dict[str, Any]:
        """The hub keeps the token in the user's auth_state and refreshes it before it expires.

        Asking the hub who the caller is, with the caller's own token, is a request of that
        user: the hub refreshes their tokens then if they are due (auth_refresh_age), so what
        is read next is fresh. Reading auth_state needs the service's admin:auth_state.
        """
        try:
            await HubClient(token=user.token).request("GET", "/user")
            model = await HubClient().request("GET", f"/users/{quote(user.name, safe='')}")
        except (HubError, httpx.HTTPError) as e:
            raise PlatformError(502, f"the hub did not give the token: {e}") from None
        state = (model or {}).get("auth_state") or {}
        if not state.get("access_token"):
            raise PlatformError(404, "no OIDC login: this account logs in with a password of this platform")
        return {
            "access_token": state["access_token"],
            "expires_at": (state.get("token_response") or {}).get("expires_at"),
        }

    @router.get("/users", summary="All platform accounts (admin)", response_model=list[Account])
    async def users(user: User) -> list[dict[str, Any]]:
        if not user.admin:
            raise PlatformError(403, "admins only")
        return [
            {"name": u.name, "role": u.role, "admin": u.is_admin, "vo": u.vo}
            for u in accounts.list_users(settings.db_url)
        ]

    return router
