"""``/deployments/{id}/flower`` and ``/deployments/{id}/cvat``: what a tool deployment offers its owner.

``GET /deployments/{id}/flower`` (address, rounds, clients, MLflow run, model),
``GET|POST /deployments/{id}/flower/token`` (show / rotate the token; owner or
admin only, like everything about a deployment: others get 404).

CVAT (``ai4lab-cvat``) runs only with ``backend: nomad`` (it is several
containers): ``GET /deployments/{id}/cvat`` gives its address and the
per-deployment admin account, ``POST /deployments/{id}/cvat/export`` writes a
task's annotations into ``datasets/<name>/`` of the owner's storage.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (local aliases) as objects

import asyncio
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ai4lab.api.answers import CvatAccess, CvatExport, FlowerInfo, FlowerToken
from ai4lab.api.auth import HubUser
from ai4lab.api.context import ApiContext, User
from ai4lab.core.db import Deployment
from ai4lab.core.errors import PlatformError
from ai4lab.core.isolation import Accounts, give, give_tree
from ai4lab.core.secret_box import box_for
from ai4lab.core.storage import StoragePathError, clean_relpath
from ai4lab.deploy.on_nomad import NomadTools
from ai4lab.deploy.tools import CVAT_ITEM, FLOWER_ITEM, LocalTools


class CvatExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: int = Field(gt=0, description="the CVAT task whose annotations to export")
    name: str | None = Field(default=None, description="folder under datasets/ (default: cvat-<task name>-<id>)")
    format: str = Field(default="COCO 1.0", description="a CVAT export format")


def build_router(api: ApiContext) -> APIRouter:
    settings = api.settings
    router = APIRouter(prefix=f"{api.prefix}/deployments", tags=["tools"])
    box = box_for(settings.state)  # opens the sealed CVAT password for its owner
    tools = api.registry.lifecycles[("tool", "local")]
    assert isinstance(tools, LocalTools)

    def of_tool(dep_id: str, user: HubUser, item: str, what: str) -> Deployment:
        dep = api.deployment(dep_id, user)
        if dep.kind != "tool" or dep.spec.get("item") != item:
            raise PlatformError(400, f"deployment {dep_id} is not {what}")
        return dep

    @router.get(
        "/{dep_id}/flower", summary="A Flower deployment: address, rounds, clients, outputs", response_model=FlowerInfo
    )
    async def flower_info(dep_id: str, user: User) -> dict[str, Any]:
        return tools.info(of_tool(dep_id, user, FLOWER_ITEM, "a Flower server"))

    @router.get(
        "/{dep_id}/flower/token", summary="The Flower token and how to join (owner/admin)", response_model=FlowerToken
    )
    async def flower_token(dep_id: str, user: User) -> dict[str, Any]:
        return tools.token(of_tool(dep_id, user, FLOWER_ITEM, "a Flower server"))

    @router.post(
        "/{dep_id}/flower/token", summary="Rotate the Flower token: the old one is refused", response_model=FlowerToken
    )
    async def flower_rotate(dep_id: str, user: User) -> dict[str, Any]:
        return tools.rotate(of_tool(dep_id, user, FLOWER_ITEM, "a Flower server"))

    @router.get("/{dep_id}/cvat", summary="CVAT's address and admin account (owner/admin)", response_model=CvatAccess)
    async def cvat_access(dep_id: str, user: User) -> dict[str, Any]:
        return NomadTools.cvat_access(of_tool(dep_id, user, CVAT_ITEM, "a CVAT deployment"), box)

    @router.post(
        "/{dep_id}/cvat/export",
        status_code=201,
        summary="Export a CVAT task's annotations into datasets/<name>/ of the owner's storage",
        response_model=CvatExport,
    )
    async def cvat_export(dep_id: str, body: CvatExportRequest, user: User) -> dict[str, Any]:
        from ai4lab.deploy.cvat_export import ExportError, export_task_annotations

        dep = of_tool(dep_id, user, CVAT_ITEM, "a CVAT deployment")
        access = NomadTools.cvat_access(dep, box)
        if dep.status != "running" or not access["url"]:
            raise PlatformError(409, f"deployment {dep_id} is {dep.status}: CVAT must be running to export")
        if body.name is not None and (clean_relpath(body.name) != body.name or "/" in body.name):
            raise StoragePathError(f"name {body.name!r}: give one folder name, without '/' or '..'")
        try:
            folder = await asyncio.to_thread(
                export_task_annotations,
                access["url"],
                (access["username"], access["password"]),
                body.task_id,
                settings.user_storage(dep.owner),
                format_name=body.format,
                name=body.name,
            )
        except ExportError as e:
            raise PlatformError(400, str(e)) from None
        return await asyncio.to_thread(hand_over, folder, dep.owner)

    def hand_over(folder: Path, owner: str) -> dict[str, Any]:
        """The exported folder, written by the platform, becomes the owner's data; what it holds."""
        ident = Accounts.from_settings(settings).ensure(owner)
        give_tree(folder, ident)
        give(folder.parent, ident)
        rel = folder.relative_to(os.path.realpath(settings.user_storage(owner))).as_posix()
        return {
            "dataset": rel,
            "files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
        }

    return router
