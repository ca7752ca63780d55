"""Tool deployments in the platform API: start (``kind="tool"``) and the Flower panel's endpoints.

``GET /deployments/{id}/flower`` (address, rounds, clients, MLflow run, model),
``GET|POST /deployments/{id}/flower/token`` (show / rotate the token; owner or
admin only, like everything about a deployment: others get 404). The contract
is written down in FLOWER-API.md of the coordination notes and the README.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from ai4lab import accounts
from ai4lab import deployments as deps
from ai4lab.api.auth import HubUser
from ai4lab.catalog import Catalog
from ai4lab.catalog.registry import Viewer
from ai4lab.db import Deployment
from ai4lab.deploy.tools import ToolDeployments, ToolError
from ai4lab.settings import Settings


class ToolRoutes:
    def __init__(self, prefix: str, settings: Settings, catalog: Catalog, tools: ToolDeployments,
                 current_user: Callable[..., Awaitable[HubUser]],
                 visible: Callable[[Deployment | None, HubUser], Deployment]) -> None:
        self.settings, self.catalog, self.tools, self.visible = settings, catalog, tools, visible
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

    def flower(self, dep_id: str, user: HubUser) -> Deployment:
        dep = self.visible(deps.get(self.settings.db_url, dep_id), user)
        if dep.kind != "tool" or dep.spec.get("item") != "ai4lab-flower":
            raise HTTPException(400, f"deployment {dep_id} is not a Flower server")
        return dep

    def create(self, body: Any, user: HubUser) -> dict[str, Any]:
        acc = accounts.get_user(self.settings.db_url, user.name) or accounts.ensure_user(
            self.settings.db_url, user.name, admin=user.admin)
        if not body.item:
            raise HTTPException(400, "say which tool to start: item=<catalog id>, e.g. ai4lab-flower")
        item = self.catalog.get("tool", body.item, Viewer(name=user.name, vo=acc.vo, admin=user.admin))
        if item is None:
            raise HTTPException(404, f"no tool {body.item!r} in the catalog")
        try:
            dep = self.tools.create(user.name, item, body.config, body.hardware, title=body.title, vo=acc.vo)
        except ToolError as e:
            raise HTTPException(e.status, str(e)) from None
        return dep.to_dict()
