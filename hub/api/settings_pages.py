"""``/settings``: a user's own settings pages in the browser; today where their storage is (``/settings/storage``).

The page shows where the storage is and connects a user's own S3 or WebDAV
storage through ``PUT /me/storage`` (the same checks as the API and the CLI),
from the page's script with the hub login's cookie and its XSRF token.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (local aliases) as objects

import asyncio
import os

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ai4lab.api.context import ApiContext, User
from ai4lab.api.pages import _env
from ai4lab.core import own_storage
from ai4lab.core.storage import human_size, storage_use


def build_router(api: ApiContext) -> APIRouter:
    prefix, settings = api.prefix, api.settings
    router = APIRouter(prefix=f"{prefix}/settings", include_in_schema=False)
    hub_home = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/home"

    @router.get("/storage", response_class=HTMLResponse)
    async def storage_page(user: User) -> HTMLResponse:
        where = await asyncio.to_thread(own_storage.view, settings, user.name)
        usage = await asyncio.to_thread(storage_use, settings, user.name, api.caller(user).role)
        html = _env.get_template("storage_settings.html").render(
            prefix=prefix, hub_home=hub_home, user=user, where=where, usage=usage, size=human_size,
            allowed=settings.own_storage,
        )  # fmt: skip
        return HTMLResponse(html)

    return router
