"""The operators' view beside JupyterHub's admin panel: every deployment of every user,
usage per user and per VO, the role quotas, users and roles, and catalog source errors.

Admins only (403 for everyone else). ``GET /admin/usage`` is the same data as JSON, for
the JupyterLab admin panel and scripts; the page stops deployments through the ordinary
``DELETE /deployments/{id}``, which admins may call for anyone's.
"""

import asyncio
import os
from collections import defaultdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ai4lab.api.auth import HubUser
from ai4lab.api.context import ApiContext, User
from ai4lab.api.pages import _env
from ai4lab.catalog import Catalog
from ai4lab.catalog.check import last_reports
from ai4lab.core import accounts
from ai4lab.core import deployments as deps
from ai4lab.core.errors import PlatformError
from ai4lab.core.isolation import describe_mode
from ai4lab.core.limits import CgroupLimits
from ai4lab.core.settings import Settings
from ai4lab.core.statuses import ACTIVE_STATUSES, RUNNING_STATUSES
from ai4lab.core.storage import human_size, storage_use


def usage(settings: Settings, catalog: Catalog) -> dict[str, Any]:
    """Active deployments and the resources they hold, per user and per VO."""
    users = {u.name: u for u in accounts.list_users(settings.db_url)}
    every = deps.list_deployments(settings.db_url)
    per_user: dict[str, dict[str, float]] = defaultdict(lambda: {"active": 0, "cpu": 0.0, "ram_gb": 0.0, "gpu": 0})
    per_vo: dict[str, dict[str, float]] = defaultdict(lambda: {"active": 0, "cpu": 0.0, "ram_gb": 0.0, "gpu": 0})
    for dep in every:
        if dep.status not in RUNNING_STATUSES:
            continue
        spec = dep.spec
        ram = spec.get("ram_gb") if spec.get("ram_gb") is not None else (spec.get("ram_mb") or 0) / 1000
        held = {"cpu": float(spec.get("cpu") or 0), "ram_gb": float(ram or 0), "gpu": int(spec.get("gpu") or 0)}
        vo = dep.vo or (users[dep.owner].vo if dep.owner in users else None) or "(none)"
        for bucket in (per_user[dep.owner], per_vo[vo]):
            bucket["active"] += 1
            for key, value in held.items():
                bucket[key] += value
    return {
        "deployments": [d.to_dict() for d in every],
        "per_user": dict(per_user),
        "per_vo": dict(per_vo),
        "isolation": describe_mode(settings),
        "limits": CgroupLimits(settings.cgroup_parent).description,
        "quotas": {role: q.model_dump() for role, q in settings.quotas.items()},
        "gpus": [g.model_dump() for g in settings.gpus],
        "users": [{"name": u.name, "role": u.role, "admin": u.is_admin, "vo": u.vo} for u in users.values()],
        "storage": {name: storage_use(settings, name, u.role) for name, u in users.items()},
        "catalog_errors": [e.model_dump() for e in catalog.errors()],
        "checks": last_reports(settings),
        "sources": catalog.source_views(),
    }


def build_router(api: ApiContext) -> APIRouter:
    prefix, settings, catalog = api.prefix, api.settings, api.catalog
    router = APIRouter(prefix=f"{prefix}/admin", tags=["admin"])
    hub_home = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/home"

    def require_admin(user: HubUser) -> None:
        if not user.admin:
            raise PlatformError(403, "admins only")

    @router.get("/usage", summary="All deployments, usage per user and VO, quotas, catalog errors (admin)")
    async def usage_json(user: User) -> dict[str, Any]:
        require_admin(user)
        return await asyncio.to_thread(usage, settings, catalog)

    @router.get("", include_in_schema=False, response_class=HTMLResponse)
    async def page(user: User, status: str = "active") -> HTMLResponse:
        require_admin(user)
        data = await asyncio.to_thread(usage, settings, catalog)
        shown = [
            d
            for d in data["deployments"]
            if status == "all" or (status == "active") == (d["status"] in ACTIVE_STATUSES)
        ]
        html = _env.get_template("admin.html").render(
            prefix=prefix, hub_home=hub_home, user=user, data=data, shown=shown, status=status, size=human_size
        )
        return HTMLResponse(html)

    return router
