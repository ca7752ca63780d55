"""Tool deployments in the platform API: start (``kind="tool"``) and the Flower panel's endpoints.

``GET /deployments/{id}/flower`` (address, rounds, clients, MLflow run, model),
``GET|POST /deployments/{id}/flower/token`` (show / rotate the token; owner or
admin only, like everything about a deployment: others get 404). The contract
is written down in FLOWER-API.md of the coordination notes and the README.

CVAT (``ai4lab-cvat``) runs only with ``backend: nomad`` (it is several
containers): ``GET /deployments/{id}/cvat`` gives its address and the
per-deployment admin account, ``POST /deployments/{id}/cvat/export`` writes a
task's annotations into ``datasets/<name>/`` of the owner's storage.
"""

import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncio

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from ai4lab.core import accounts
from ai4lab.core import deployments as deps
from ai4lab.api.auth import HubUser
from ai4lab.catalog import Catalog
from ai4lab.catalog.registry import Viewer
from ai4lab.core.db import Deployment
from ai4lab.api.deployment_routes import ModuleRoutes, cpu_only
from ai4lab.catalog.deploy_config import deploy_config
from ai4lab.deploy.cluster import CVAT_ITEM, ClusterDeployments, ClusterError
from ai4lab.deploy.tools import ToolDeployments, ToolError
from ai4lab.core.isolation import Accounts, give, give_tree
from ai4lab.core.secret_box import box_for
from ai4lab.core.settings import Settings

#: Roles that may start tools (Flower servers, CVAT): the overview's intermediate and advanced users.
TOOL_ROLES = ("intermediate", "advanced")
CVAT_NEEDS_NOMAD = ("ai4lab-cvat runs containers (database, cache, server, UI): it needs the Nomad backend. "
                    "Set backend: nomad and nomad.address (AI4LAB_BACKEND=nomad, AI4LAB_NOMAD__ADDRESS=http://...:4646; "
                    "see 'Running on a Nomad cluster' in the README)")


class CvatExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: int = Field(gt=0, description="the CVAT task whose annotations to export")
    name: str | None = Field(default=None, description="folder under datasets/ (default: cvat-<task name>-<id>)")
    format: str = Field(default="COCO 1.0", description="a CVAT export format")


class ToolRoutes:
    def __init__(self, prefix: str, settings: Settings, catalog: Catalog, tools: ToolDeployments,
                 current_user: Callable[..., Awaitable[HubUser]],
                 visible: Callable[[Deployment | None, HubUser], Deployment],
                 cluster: ClusterDeployments | None = None) -> None:
        self.settings, self.catalog, self.tools, self.visible = settings, catalog, tools, visible
        self.cluster = cluster
        self.box = box_for(settings.state)  # opens the sealed CVAT password for its owner
        self.router = APIRouter(prefix=prefix, tags=["tools"])
        User = Annotated[HubUser, Depends(current_user)]
        r = self.router

        @r.get("/deployments/{dep_id}/flower", summary="A Flower deployment: address, rounds, clients, outputs")
        async def flower_info(dep_id: str, user: User) -> dict[str, Any]:
            return self.tools.info(self.flower(dep_id, user))

        @r.get("/deployments/{dep_id}/flower/token", summary="The Flower token and how to join (owner/admin)")
        async def flower_token(dep_id: str, user: User) -> dict[str, Any]:
            return self.tools.token(self.flower(dep_id, user))

        @r.post("/deployments/{dep_id}/flower/token", summary="Rotate the Flower token: the old one is refused")
        async def flower_rotate(dep_id: str, user: User) -> dict[str, Any]:
            try:
                return self.tools.rotate(self.flower(dep_id, user))
            except ToolError as e:
                raise HTTPException(e.status, str(e)) from None

        @r.get("/deployments/{dep_id}/cvat", summary="CVAT's address and admin account (owner/admin)")
        async def cvat_access(dep_id: str, user: User) -> dict[str, Any]:
            return ClusterDeployments.cvat_access(self.cvat(dep_id, user), self.box)

        @r.post("/deployments/{dep_id}/cvat/export", status_code=201,
                summary="Export a CVAT task's annotations into datasets/<name>/ of the owner's storage")
        async def cvat_export(dep_id: str, body: CvatExportRequest, user: User) -> dict[str, Any]:
            from ai4lab.deploy.cvat_export import ExportError, export_task_annotations
            from ai4lab.core.storage import StoragePathError, clean_relpath

            dep = self.cvat(dep_id, user)
            access = ClusterDeployments.cvat_access(dep, self.box)
            if dep.status != "running" or not access["url"]:
                raise HTTPException(409, f"deployment {dep_id} is {dep.status}: CVAT must be running to export")
            try:
                if body.name is not None and (clean_relpath(body.name) != body.name or "/" in body.name):
                    raise StoragePathError(f"name {body.name!r}: give one folder name, without '/' or '..'")
                folder = await asyncio.to_thread(
                    export_task_annotations, access["url"], (access["username"], access["password"]), body.task_id,
                    self.settings.user_storage(dep.owner), format_name=body.format, name=body.name)
            except (StoragePathError, ExportError) as e:
                raise HTTPException(400, str(e)) from None
            # the platform wrote it; it is the owner's data
            owner = Accounts.from_settings(self.settings).ensure(dep.owner)
            give_tree(folder, owner)
            give(folder.parent, owner)
            rel = folder.relative_to(os.path.realpath(self.settings.user_storage(dep.owner))).as_posix()
            return {"dataset": rel, "files": sorted(p.relative_to(folder).as_posix()
                                                    for p in folder.rglob("*") if p.is_file())}

    def cvat(self, dep_id: str, user: HubUser) -> Deployment:
        dep = self.visible(deps.get(self.settings.db_url, dep_id), user)
        if dep.kind != "tool" or dep.spec.get("item") != CVAT_ITEM:
            raise HTTPException(400, f"deployment {dep_id} is not a CVAT deployment")
        return dep

    def flower(self, dep_id: str, user: HubUser) -> Deployment:
        dep = self.visible(deps.get(self.settings.db_url, dep_id), user)
        if dep.kind != "tool" or dep.spec.get("item") != "ai4lab-flower":
            raise HTTPException(400, f"deployment {dep_id} is not a Flower server")
        return dep

    async def create(self, body: Any, user: HubUser) -> dict[str, Any]:
        acc = accounts.get_user(self.settings.db_url, user.name) or accounts.ensure_user(
            self.settings.db_url, user.name, admin=user.admin)
        if not body.item:
            raise HTTPException(400, "say which tool to start: item=<catalog id>, e.g. ai4lab-flower")
        item = self.catalog.get("tool", body.item, Viewer(name=user.name, vo=acc.vo, admin=user.admin))
        if item is None:
            raise HTTPException(404, f"no tool {body.item!r} in the catalog")
        if acc.role not in TOOL_ROLES:
            raise HTTPException(403, f"starting tools needs role {' or '.join(TOOL_ROLES)}; yours is {acc.role}")
        quota = self.settings.quotas[acc.role]
        if item.id == CVAT_ITEM:
            if self.cluster is None:
                raise HTTPException(400, CVAT_NEEDS_NOMAD)
            offer = await self.cluster.offer(acc.vo)
            form = deploy_config(item, quota=quota, role=acc.role, gpus=offer["gpus"], backends=["nomad"],
                                 datacenters=offer["datacenters"], hard=self.settings.resources_hard)
            try:
                dep = await self.cluster.create_tool(user.name, item, body.config,
                                                     ModuleRoutes.chosen_hardware(form, body.hardware),
                                                     title=body.title, vo=acc.vo)
            except ClusterError as e:
                raise HTTPException(e.status, str(e)) from None
            return dep.to_dict()
        # the same checks as a module's: the role's quota and the tool's own minimum resources
        form = deploy_config(item, quota=quota, role=acc.role, gpus=self.settings.gpus,
                             hard=self.settings.resources_hard)
        hardware = ModuleRoutes.chosen_hardware(form, body.hardware)
        warnings = cpu_only(form, hardware, body.hardware, "tools")
        try:
            dep = self.tools.create(user.name, item, body.config, hardware, title=body.title, vo=acc.vo,
                                    warnings=warnings)
        except ToolError as e:
            raise HTTPException(e.status, str(e)) from None
        return dep.to_dict()
