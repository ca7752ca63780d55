"""``/me`` and ``/users``: who the caller is (role, VO, quota), and every account for admins."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (local aliases) as objects

import asyncio
from typing import Any

from fastapi import APIRouter

from ai4lab import __version__
from ai4lab.api.answers import Account, Me
from ai4lab.api.context import ApiContext, User
from ai4lab.core import accounts
from ai4lab.core.errors import PlatformError
from ai4lab.core.storage import open_storage


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
            "storage": {
                "used_bytes": await asyncio.to_thread(open_storage(settings, user.name).usage),
                "allowed_bytes": settings.quotas[caller.role].storage_bytes,
            },
            "gpus": settings.gpus,
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
