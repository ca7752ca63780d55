"""Serverless (OSCAR) and pipeline deployments in the platform API.

``POST /deployments`` with kind ``serverless`` or ``pipeline``, ``DELETE`` and
``GET`` are dispatched here from app.py; ``POST /deployments/{id}/predict`` is
shared with module deployments (deployment_routes hands these kinds over).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from ai4lab.core import accounts
from ai4lab.api.auth import HubUser
from ai4lab.catalog import Catalog
from ai4lab.catalog.registry import Viewer
from ai4lab.core.db import Deployment
from ai4lab.deploy.modules import ModuleDeployments
from ai4lab.deploy.pipelines import Pipelines, Value
from ai4lab.deploy.serverless import NOT_CONFIGURED, InferenceError, ServerlessDeployments
from ai4lab.core.settings import Settings

KINDS = ("serverless", "pipeline")


class InferenceRoutes:
    def __init__(self, settings: Settings, catalog: Catalog, modules: ModuleDeployments,
                 account_and_item: Callable[[str | None, HubUser, str], tuple[Any, Any]]) -> None:
        self.settings = settings
        self.account_and_item = account_and_item
        self.serverless = ServerlessDeployments(settings)

        def items(item_id: str, owner: str) -> Any:
            acc = accounts.get_user(settings.db_url, owner)
            return catalog.get("module", item_id, Viewer(name=owner, vo=acc.vo if acc else None, admin=True))

        self.pipelines = Pipelines(settings, modules, self.serverless, items)
        self.max_bytes = int(settings.max_upload_mb * 2**20)

    async def create(self, body: Any, user: HubUser) -> dict[str, Any]:
        try:
            if body.kind == "serverless":
                if not self.serverless.configured:
                    raise InferenceError(400, NOT_CONFIGURED)
                acc, item = self.account_and_item(body.item, user, "deploy")
                dep = await self.serverless.create(user.name, item, title=body.title, vo=acc.vo)
            else:
                acc = accounts.get_user(self.settings.db_url, user.name)
                dep = await self.pipelines.create(user.name, body.title, body.steps, admin=False,
                                                  vo=acc.vo if acc else None)
        except InferenceError as e:
            raise HTTPException(e.status, str(e)) from None
        return dep.to_dict()

    async def refresh(self, dep: Deployment) -> Deployment:
        return await self.serverless.refresh(dep) if dep.kind == "serverless" else dep

    async def stop(self, dep: Deployment, by: str) -> None:
        if dep.kind == "serverless":
            try:
                await self.serverless.stop(dep, f"stopped by {by}")
            except InferenceError as e:
                raise HTTPException(e.status, str(e)) from None

    async def predict(self, dep: Deployment, request: Request, user: HubUser) -> Response:
        """Predict with a serverless deployment or run a pipeline: multipart (a file + fields) or JSON fields."""
        if int(request.headers.get("content-length") or 0) > self.max_bytes:
            raise HTTPException(413, f"upload larger than {self.settings.max_upload_mb:g} MB")
        ctype = request.headers.get("content-type", "")
        fields: dict[str, Any] = {}
        files: dict[str, Value] = {}
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_part_size=self.max_bytes)
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files[name] = Value(content=await value.read(), filename=value.filename or name,
                                        content_type=value.content_type or "application/octet-stream")
                else:
                    fields[name] = value
        else:
            try:
                fields = json.loads(await request.body() or b"{}")
            except ValueError:
                raise HTTPException(400, "the body is not valid JSON") from None
            if not isinstance(fields, dict):
                raise HTTPException(400, "send a JSON object of predict arguments, or a multipart file upload")
        try:
            if dep.kind == "pipeline":
                if len(files) != 1:
                    raise HTTPException(400, "send the pipeline's input as one file (multipart/form-data), "
                                             "e.g. curl -F file=@digit.png")
                return JSONResponse(await self.pipelines.run(dep, next(iter(files.values())), fields))
            result = await self.serverless.predict(
                dep, fields, {k: (v.filename, v.content or b"") for k, v in files.items()})
        except InferenceError as e:
            raise HTTPException(e.status, str(e)) from None
        if result.content is not None:
            return Response(result.content, media_type=result.content_type)
        return JSONResponse({"status": "OK", "predictions": result.json})
