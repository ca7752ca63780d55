"""The platform API: a JupyterHub-managed FastAPI service at ``/services/ai4lab/``.

Owners see and stop only their own deployments and storage; admins see all.
Other users' things answer 404, so that their existence is not revealed.
"""


import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ai4lab import __version__

from ai4lab.core import accounts
from ai4lab.core import deployments as deps
from ai4lab.api import admin_pages, catalog_routes, deployment_routes, inference_routes, marketplace_pages, tool_routes
from ai4lab.api.auth import HubAuthenticator, HubUser
from ai4lab.catalog import Catalog
from ai4lab.backends.local import LocalBackend
from ai4lab.backends.nomad import NomadBackend
from ai4lab.deploy.cluster import CVAT_ITEM, ClusterDeployments
from ai4lab.deploy.pipelines import Step
from ai4lab.flower.config import FlowerConfig
from ai4lab.spawners.profiles import SessionOptions
from ai4lab.core.db import Deployment
from ai4lab.deploy.modules import ModuleDeployments
from ai4lab.deploy.tools import ToolDeployments
from ai4lab.deploy.trainings import Trainings
from ai4lab.client.hub import HubClient, HubError
from ai4lab.core.process_tokens import revoke_ended_tokens
from ai4lab.core.secret_box import box_for
from ai4lab.core.settings import Settings, get_settings
from ai4lab.core.storage import OwnedStorage, StoragePathError, UserStorage

KINDS = ("ide", "module", "training", "batch", "tool", "serverless", "pipeline")


#: The fields each kind of deployment reads; ``kind`` itself aside. A field of another kind is
#: refused (422) rather than ignored, so that a typo or a misplaced setting is not silently lost.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "ide": ("name", "options"),
    "module": ("item", "hardware", "title", "weights"),
    "training": ("item", "hardware", "title", "dataset", "args", "init_weights"),
    "batch": ("item", "hardware", "title", "input", "output", "fields", "file_field", "weights"),
    "serverless": ("item", "title"),
    "pipeline": ("title", "steps"),
    "tool": ("item", "hardware", "title", "config"),
}
#: Keys of the deploy form's hardware section (``GET /catalog/{kind}/{id}/config``).
HARDWARE_FIELDS = ("cpu_num", "gpu_num", "gpu_type", "ram", "disk", "datacenter")
#: Keys of each catalog tool's ``config``.
TOOL_CONFIG_FIELDS: dict[str, tuple[str, ...]] = {
    "ai4lab-flower": tuple(FlowerConfig.model_fields),
    CVAT_ITEM: ("storage",),
}


class DeploymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="'ide' (an IDE session through the hub), 'module' (a DEEPaaS inference server), "
                      "'training', 'batch' or 'tool' (a catalog tool such as ai4lab-flower)")
    name: str = Field(default="", description="ide: server name ('' is the default server)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="ide: {profile, ide, cpu, ram_gb, gpu}, as in the spawn form"
    )
    item: str | None = Field(default=None, description="module: catalog id of the module")
    hardware: dict[str, Any] = Field(
        default_factory=dict, description="module: {cpu_num, gpu_num, ram, disk} within the item's deploy form"
    )
    title: str = Field(default="", description="module: a title to find the deployment again")
    weights: str | None = Field(
        default=None, description="module: weights to predict with: a file in your storage or a training id")
    dataset: str | None = Field(default=None, description="training: folder or file in your storage")
    args: dict[str, Any] = Field(default_factory=dict, description="training: the module's train arguments")
    init_weights: str | None = Field(default=None, description="training: start from the model of this training")
    input: str | None = Field(default=None, description="batch: folder of files in your storage to predict on")
    output: str | None = Field(default=None, description="batch: folder in your storage for the results")
    fields: dict[str, Any] = Field(default_factory=dict, description="batch: other predict arguments")
    file_field: str | None = Field(default=None, description="batch: the predict field that takes each file")
    steps: list[dict[str, Any]] = Field(
        default_factory=list, description="pipeline: [{deployment, input_field, output: json|file, accept, fields}]")
    config: dict[str, Any] | None = Field(
        default=None, description="tool: the tool's settings, e.g. ai4lab-flower: {rounds, strategy, ...}")

    def unknown_fields(self) -> list[dict[str, Any]]:
        """Validation errors (FastAPI's shape) for the fields this kind does not read, top-level and nested.

        Why: the model holds the fields of every kind, and ``options``, ``hardware``,
        ``steps`` and ``config`` are free-form dicts; without this a field meant for
        another kind, or a misspelt key, would be dropped without a word.
        """
        allowed = KIND_FIELDS.get(self.kind)
        if allowed is None:
            return []
        errors = [_unknown(("body", name), getattr(self, name), allowed, f"kind {self.kind!r}")
                  for name in sorted(self.model_fields_set - {"kind", *allowed})]
        nested: list[tuple[str, dict[str, Any] | None, tuple[str, ...]]] = [
            ("options", self.options, tuple(SessionOptions.model_fields)),
            ("hardware", self.hardware, HARDWARE_FIELDS),
        ]
        if self.kind == "tool" and self.item in TOOL_CONFIG_FIELDS:
            nested.append(("config", self.config, TOOL_CONFIG_FIELDS[self.item]))
        for name, value, keys in nested:
            if name in allowed and name in self.model_fields_set and isinstance(value, dict):
                errors += [_unknown(("body", name, key), value[key], keys, name) for key in sorted(set(value) - set(keys))]
        if self.kind == "pipeline":
            for n, step in enumerate(self.steps):
                errors += [_unknown(("body", "steps", n, key), step[key], tuple(Step.model_fields), "a pipeline step")
                           for key in sorted(set(step) - set(Step.model_fields))]
        return errors


def _unknown(loc: tuple[Any, ...], value: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    return {"type": "extra_forbidden", "loc": loc, "input": value,
            "msg": f"unknown field {loc[-1]!r} for {where}: use {', '.join(allowed)}"}


def create_app(settings: Settings | None = None, authenticator: HubAuthenticator | None = None) -> FastAPI:
    settings = settings or get_settings()
    auth = authenticator or HubAuthenticator(allow_token_in_url=settings.allow_token_in_url)
    prefix = auth.prefix
    catalog = Catalog.for_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        box = box_for(settings.state)
        deps.seal_secrets(settings.db_url, box.seal, box.is_sealed)  # rows of older versions
        await app.state.modules.recover()
        await app.state.trainings.recover()
        await app.state.tools.recover()
        tasks = [asyncio.create_task(_refresh_catalog_forever(catalog)),
                 asyncio.create_task(app.state.modules.watch_forever()),
                 asyncio.create_task(_watch_forever(app.state.trainings.watch_once, every=1.0)),
                 asyncio.create_task(_watch_forever(app.state.tools.watch_once, every=1.0)),
                 # after the recoveries above: deployments found finished lose their token too
                 asyncio.create_task(_watch_forever(lambda: revoke_ended_tokens(settings.db_url), every=1.0))]
        if cluster is not None:
            tasks.append(asyncio.create_task(_watch_forever(cluster.watch_once, every=1.0)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()

    app = FastAPI(
        lifespan=lifespan,
        title="ai4lab platform API",
        version=__version__,
        description="Deployments, storage and accounts of an ai4lab platform. "
        "Authenticate with a JupyterHub API token: `Authorization: token <token>`.",
        docs_url=f"{prefix}/docs",
        openapi_url=f"{prefix}/openapi.json",
        redoc_url=None,
    )
    auth.install(app)
    backend = LocalBackend()
    modules = ModuleDeployments(settings, backend)
    trainings = Trainings(settings, backend)
    app.state.modules = modules
    app.state.trainings = trainings
    # backend "nomad": module and training deployments are Nomad jobs (hub/deploy/cluster.py)
    cluster = ClusterDeployments(settings, NomadBackend.from_settings(settings.nomad)) if settings.backend == "nomad" else None
    tools = ToolDeployments(settings, backend)
    app.state.tools = tools
    router = APIRouter(prefix=prefix)

    async def current_user(request: Request) -> HubUser:
        return await auth.user_for(request)

    CurrentUser = Annotated[HubUser, Depends(current_user)]

    async def optional_user(request: Request) -> HubUser | None:
        """Anonymous callers may browse public things; a bad token is still refused."""
        if auth.has_credentials(request):
            return await auth.user_for(request)
        return None

    def storage_for(user: HubUser) -> UserStorage:
        store = OwnedStorage(f"file://{settings.user_storage(user.name)}", {}, backend.identity(user.name))
        store.ensure_root()
        return store

    def visible(dep: Deployment | None, user: HubUser) -> Deployment:
        if dep is None or (dep.owner != user.name and not user.admin):
            raise HTTPException(404, "no such deployment")
        return dep

    def hub() -> HubClient:
        return HubClient()

    @router.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @router.get("/me", summary="Who am I: name, role, admin flag and quota")
    async def me(user: CurrentUser) -> dict[str, Any]:
        account = accounts.get_user(settings.db_url, user.name) or accounts.ensure_user(
            settings.db_url, user.name, admin=user.admin
        )
        return {
            "name": user.name,
            "admin": user.admin,
            "role": account.role,
            "vo": account.vo,
            "quota": settings.quotas[account.role].model_dump(),
            "gpus": [g.model_dump() for g in settings.gpus],
        }

    @router.get("/users", summary="All platform accounts (admin)")
    async def users(user: CurrentUser) -> list[dict[str, Any]]:
        if not user.admin:
            raise HTTPException(403, "admins only")
        return [
            {"name": u.name, "role": u.role, "admin": u.is_admin, "vo": u.vo}
            for u in accounts.list_users(settings.db_url)
        ]

    @router.get("/deployments", summary="My deployments (admins: all=true for everyone's)")
    async def list_deployments(
        user: CurrentUser,
        kind: str | None = None,
        all: bool = Query(False, description="admins: list every user's deployments"),
    ) -> list[dict[str, Any]]:
        if all and not user.admin:
            raise HTTPException(403, "only admins may list all deployments")
        owner = None if all else user.name
        return [d.to_dict() for d in deps.list_deployments(settings.db_url, owner=owner, kind=kind)]

    @router.get("/deployments/{dep_id}", summary="One deployment")
    async def get_deployment(dep_id: str, user: CurrentUser) -> dict[str, Any]:
        dep = await inference.refresh(visible(deps.get(settings.db_url, dep_id), user))
        out = dep.to_dict()
        if dep.kind == "batch" and dep.backend_state:
            out["progress"] = trainings.progress(dep, await backend.logs(dep.backend_state, tail=50))
        return out

    @router.post("/deployments", status_code=201, summary="Start a deployment")
    async def create_deployment(body: DeploymentRequest, user: CurrentUser) -> dict[str, Any]:
        if body.kind not in KINDS:
            raise HTTPException(
                400, f"unknown deployment kind {body.kind!r}: this platform runs {', '.join(KINDS)}"
            )
        if unknown := body.unknown_fields():
            raise RequestValidationError(unknown)
        if cluster is not None and body.kind in ("module", "training", "batch"):
            return await module_routes.create_on_cluster(body, user)
        if body.kind == "module":
            return module_routes.create(body, user)
        if body.kind in ("training", "batch"):
            return await module_routes.create_training(body, user)
        if body.kind in inference_routes.KINDS:
            return await inference.create(body, user)
        if body.kind == "tool":
            return await tool_routes_.create(body, user)
        try:
            await hub().start_server(user.name, body.name, body.options)
        except HubError as e:
            raise HTTPException(e.status if 400 <= e.status < 500 else 502, str(e)) from None
        found = [
            d for d in deps.list_deployments(settings.db_url, owner=user.name, kind="ide")
            if d.name == (body.name or "default")
        ]
        if not found:
            raise HTTPException(502, "the hub accepted the session but no deployment was recorded")
        return found[0].to_dict()

    @router.delete("/deployments/{dep_id}", summary="Stop a deployment")
    async def delete_deployment(dep_id: str, user: CurrentUser) -> dict[str, Any]:
        dep = visible(deps.get(settings.db_url, dep_id), user)
        if dep.kind == "ide":
            try:
                await hub().stop_server(dep.owner, "" if dep.name == "default" else dep.name)
            except HubError as e:
                if e.status != 404:
                    raise HTTPException(502, f"hub refused to stop the session: {e}") from None
        elif dep.backend == "nomad" and cluster is not None:
            await cluster.stop(dep, f"stopped by {user.name}")
        elif dep.kind == "module":
            await modules.stop(dep, f"stopped by {user.name}")
        elif dep.kind in ("training", "batch"):
            await trainings.cancel(dep, user.name)
        elif dep.kind in inference_routes.KINDS:
            await inference.stop(dep, user.name)
        elif dep.kind == "tool":
            await tools.stop(dep, f"stopped by {user.name}")
        elif dep.status in ("queued", "starting", "running"):
            await backend.stop(dep.backend_state)
        if (cur := deps.get(settings.db_url, dep_id)) and cur.status in ("queued", "starting", "running"):
            deps.set_status(settings.db_url, dep_id, "stopped", f"stopped by {user.name}")
        return deps.get(settings.db_url, dep_id).to_dict()  # type: ignore[union-attr]

    @router.get("/deployments/{dep_id}/logs", summary="Logs of a deployment", response_class=PlainTextResponse)
    async def deployment_logs(
        dep_id: str, user: CurrentUser, tail: int | None = Query(None, ge=1, le=100_000),
        follow: bool = Query(False, description="stream new lines as server-sent events until it ends"),
    ) -> Any:
        dep = visible(deps.get(settings.db_url, dep_id), user)
        if dep.backend == "nomad" and cluster is not None and dep.kind != "ide":
            return await cluster.logs(dep, tail=tail)
        if not follow:
            return await backend.logs(dep.backend_state, tail=tail)
        return StreamingResponse(_follow_logs(settings.db_url, dep_id, tail), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- storage ------------------------------------------------------------------
    def storage_errors(fn: Any) -> Any:
        import functools

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except StoragePathError as e:
                raise HTTPException(400, str(e)) from None
            except FileNotFoundError as e:
                raise HTTPException(404, str(e)) from None
            except (IsADirectoryError, NotADirectoryError, FileExistsError) as e:
                raise HTTPException(409, str(e)) from None

        return wrapper

    @router.get("/storage", summary="List the root of my storage")
    @router.get("/storage/{path:path}", summary="List a folder or download a file of my storage")
    @storage_errors
    async def storage_get(user: CurrentUser, path: str = "") -> Any:
        store = storage_for(user)
        if not path.strip("/") or store.is_dir(path):
            return {"path": path.strip("/"), "type": "directory", "content": store.listdir(path)}
        data = store.read(path)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{Path(path).name}"'},
        )

    @router.put("/storage/{path:path}", summary="Upload a file (raw body) to my storage")
    @storage_errors
    async def storage_put(path: str, request: Request, user: CurrentUser) -> dict[str, Any]:
        return storage_for(user).write(path, await request.body())

    @router.post("/storage/{path:path}", summary="Upload files (multipart) into a folder, or create a folder")
    @storage_errors
    async def storage_post(
        path: str, user: CurrentUser, files: list[UploadFile] | None = None
    ) -> list[dict[str, Any]]:
        store = storage_for(user)
        if not files:
            return [store.mkdir(path)]
        out = []
        for f in files:
            name = Path(f.filename or "upload").name
            out.append(store.write(f"{path.strip('/')}/{name}", await f.read()))
        return out

    @router.delete("/storage/{path:path}", summary="Delete a file or folder of my storage")
    @storage_errors
    async def storage_delete(path: str, user: CurrentUser) -> dict[str, str]:
        storage_for(user).delete(path)
        return {"deleted": path}

    module_routes = deployment_routes.ModuleRoutes(prefix, settings, catalog, modules, trainings, current_user,
                                                   visible, cluster=cluster)
    inference = inference_routes.InferenceRoutes(settings, catalog, modules, module_routes.account_and_item)
    module_routes.predict_kinds.update(dict.fromkeys(inference_routes.KINDS, inference.predict))
    app.include_router(module_routes.router)
    tool_routes_ = tool_routes.ToolRoutes(prefix, settings, catalog, tools, current_user, visible, cluster=cluster)
    app.include_router(tool_routes_.router)
    app.include_router(router)
    app.state.catalog = catalog
    app.include_router(catalog_routes.build_router(prefix, settings, catalog, current_user, optional_user,
                                                   cluster=cluster))
    app.include_router(marketplace_pages.build_router(prefix, settings, catalog, current_user))
    app.include_router(admin_pages.build_router(prefix, settings, catalog, current_user))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "status": exc.status_code}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 shape (a list, as the OpenAPI schema says), with pydantic's
        "Extra inputs are not permitted" turned into a sentence naming the field."""
        errors = []
        for err in exc.errors():
            err = {k: v for k, v in err.items() if k != "ctx"}
            if err.get("type") == "extra_forbidden" and err.get("msg") == "Extra inputs are not permitted":
                err["msg"] = f"unknown field {err['loc'][-1]!r}: this request does not take it"
            errors.append(err)
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    return app


async def _follow_logs(db_url: str, dep_id: str, tail: int | None) -> AsyncIterator[str]:
    """Server-sent events: one ``data:`` per log line, then ``event: end`` with the final status."""
    import json as _json
    from collections import deque

    offset = 0
    first = True
    while True:
        dep = deps.get(db_url, dep_id)
        path = Path((dep.backend_state if dep else {}).get("log_path", ""))
        if path.is_file():
            with open(path, errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
            lines = chunk.splitlines()
            if first and tail:
                lines = list(deque(lines, maxlen=tail))
            for line in lines:
                yield f"data: {line}\n\n"
        first = False
        if dep is None or dep.status not in ("queued", "starting", "running"):
            status = dep.status if dep else "gone"
            yield f"event: end\ndata: {_json.dumps({'status': status})}\n\n"
            return
        await asyncio.sleep(0.5)


async def _watch_forever(step: Any, every: float) -> None:
    import logging

    while True:
        try:
            await step()
        except Exception:  # noqa: BLE001 - keep watching
            logging.getLogger("ai4lab.watch").exception("watch step failed")
        await asyncio.sleep(every)


async def _refresh_catalog_forever(catalog: Catalog, every: float = 60) -> None:
    """Fetch remote sources whose cache is older than their refresh interval."""
    import logging

    log = logging.getLogger("ai4lab.catalog")
    while True:
        try:
            await asyncio.to_thread(catalog.refresh, False)
        except Exception:  # noqa: BLE001 - a broken source must not stop the loop
            log.exception("catalog refresh failed")
        await asyncio.sleep(every)


def main() -> None:
    import uvicorn

    settings = get_settings()
    port = int(os.environ.get("AI4LAB_API_PORT", settings.api_port))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
