"""``/me``, ``/me/oidc-token``, ``/users``: who the caller is (role, VO, quota, provider token); all accounts."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (local aliases) as objects

from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter

from ai4lab import __version__
from ai4lab.api.answers import Account, Me, OidcToken
from ai4lab.api.context import ApiContext, User
from ai4lab.client.hub import HubClient, HubError
from ai4lab.core import accounts
from ai4lab.core.errors import PlatformError


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
            "gpus": settings.gpus,
        }

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
