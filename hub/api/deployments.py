"""``/deployments``: start, list, read, stop, logs, predictions, and each module's own API (proxied).

Every kind goes through the registry (``ai4lab.deploy.registry``): this router
knows the request models only as the union the registry builds, and the
lifecycles only through their contract. Owners see their own deployments,
admins everyone's; others get 404.
"""

# no `from __future__ import annotations`: the request body's type is built at run time from the registry,
# and FastAPI reads the route's annotations as objects

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from ai4lab.api.answers import DeploymentView, Metrics
from ai4lab.api.context import ApiContext, User
from ai4lab.api.mlflow_gateway import HOP_HEADERS
from ai4lab.core import deployments as deps
from ai4lab.core.db import ACTIVE_STATUSES, Deployment
from ai4lab.core.errors import PlatformError
from ai4lab.deploy.deepaas import answer_type, form_body
from ai4lab.deploy.lifecycle import Value

HOP = HOP_HEADERS | {"content-encoding"}


class RunningDeployments:
    """Running deployments by id, so that a proxied request costs no query; forgotten at any status change."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._running: dict[str, Deployment] = {}
        deps.on_status_change(self.forget)

    def get(self, dep_id: str) -> Deployment | None:
        dep = self._running.get(dep_id)
        if dep is None:
            dep = deps.get(self.db_url, dep_id)
            if dep is not None and dep.status == "running":
                self._running[dep_id] = dep
        return dep

    def forget(self, dep_id: str, status: str) -> None:
        self._running.pop(dep_id, None)


def build_router(api: ApiContext) -> APIRouter:
    settings, registry = api.settings, api.registry
    router = APIRouter(prefix=f"{api.prefix}/deployments", tags=["deployments"])
    Body = registry.request_model()
    running = RunningDeployments(settings.db_url)
    max_bytes = int(settings.max_upload_mb * 2**20)
    client = httpx.AsyncClient(timeout=300)
    router.running = running  # type: ignore[attr-defined]  # kept alive with the router (held weakly by deps)

    def view(dep: Deployment) -> dict[str, Any]:
        return dep.to_dict()

    @router.get("", summary="My deployments (admins: all=true for everyone's)", response_model=list[DeploymentView])
    async def list_deployments(
        user: User,
        kind: str | None = None,
        all: bool = Query(False, description="admins: list every user's deployments"),
    ) -> Response:
        if all and not user.admin:
            raise PlatformError(403, "only admins may list all deployments")
        owner = None if all else user.name
        # answered as built: the records are DeploymentView's fields already, and FastAPI checking the
        # answer against the model again took a third of a list's time (the model stays for the schema)
        return JSONResponse(
            [{**view(d), "progress": None} for d in deps.list_deployments(settings.db_url, owner=owner, kind=kind)]
        )

    @router.post(
        "", status_code=201, summary="Start a deployment (the body's kind says which)", response_model=DeploymentView
    )
    async def create_deployment(body: Body, user: User) -> dict[str, Any]:  # type: ignore[valid-type]  # union built at run time
        lifecycle = registry.for_request(body)
        await api.platform.storage(user.name)  # an S3 or WebDAV storage is mounted before paths in it are checked
        return view(await lifecycle.create(body, api.caller(user)))

    @router.get("/{dep_id}", summary="One deployment", response_model=DeploymentView)
    async def get_deployment(dep_id: str, user: User) -> dict[str, Any]:
        dep = api.deployment(dep_id, user)
        lifecycle = registry.of(dep)
        dep = await lifecycle.refresh(dep)
        out = view(dep)
        if (progress := await lifecycle.progress(dep)) is not None:
            out["progress"] = progress
        return out

    @router.delete("/{dep_id}", summary="Stop a deployment", response_model=DeploymentView)
    async def delete_deployment(dep_id: str, user: User) -> dict[str, Any]:
        dep = api.deployment(dep_id, user)
        await registry.of(dep).stop(dep, f"stopped by {user.name}")
        return view(deps.get(settings.db_url, dep_id) or dep)

    @router.get("/{dep_id}/logs", summary="Logs of a deployment", response_class=PlainTextResponse)
    async def deployment_logs(
        dep_id: str,
        user: User,
        tail: int | None = Query(None, ge=1, le=100_000),
        follow: bool = Query(False, description="stream new lines as server-sent events until it ends"),
    ) -> Any:
        dep = api.deployment(dep_id, user)
        lifecycle = registry.of(dep)
        if not follow or dep.backend == "nomad":  # Nomad keeps the logs of its jobs: read them from there
            return PlainTextResponse(await lifecycle.logs(dep, tail=tail))
        return StreamingResponse(
            _follow_logs(settings.db_url, dep_id, tail),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- predictions and the module's own API -------------------------------------------------------
    def running_module(dep_id: str, user: Any) -> Deployment:
        dep = api.visible(running.get(dep_id), user)
        if dep.kind != "module":
            raise PlatformError(400, f"deployment {dep_id} is a {dep.kind}, not a module")
        if dep.status != "running":
            reason = f": {dep.status_reason}" if dep.status_reason else ""
            raise PlatformError(409, f"deployment {dep_id} is {dep.status}{reason}")
        registry.of(dep).touch(dep_id)
        return dep

    def too_large() -> PlatformError:
        return PlatformError(413, f"upload larger than {settings.max_upload_mb:g} MB")

    async def read_body(request: Request) -> bytes:
        if int(request.headers.get("content-length") or 0) > max_bytes:
            raise too_large()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    async def forward(
        dep: Deployment, method: str, path: str, params: Any, headers: dict[str, str], body: bytes, stream: bool = True
    ) -> Response:
        """``path`` (below the deployment's ``/api``) on its DEEPaaS server, wherever its lifecycle runs it."""
        url = registry.of(dep).api_base(dep) + path  # type: ignore[attr-defined]
        try:
            req = client.build_request(method, url, params=params, headers=headers, content=body)
            upstream = await client.send(req, stream=True)
        except httpx.TransportError as e:
            raise PlatformError(502, f"the deployment does not answer: {e}") from None
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
        if stream:
            return StreamingResponse(
                upstream.aiter_bytes(),
                status_code=upstream.status_code,
                headers=out,
                background=BackgroundTask(upstream.aclose),
            )
        content = await upstream.aread()
        await upstream.aclose()
        return Response(content, status_code=upstream.status_code, headers=out)

    async def proxy(dep_id: str, path: str, request: Request, user: User) -> Response:
        dep = running_module(dep_id, user)
        body = await read_body(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        return await forward(dep, request.method, f"/{path}", request.query_params, headers, body)

    for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):  # one route each: one operation id each
        router.add_api_route(
            "/{dep_id}/api/{path:path}",
            proxy,
            methods=[method],
            name=f"proxy_{method.lower()}",
            summary="The deployment's own API (DEEPaaS, Swagger UI at ui), for its owner",
        )

    async def with_weights(request: Request, weights: str) -> tuple[bytes, dict[str, str]]:
        """The multipart body again, with the deployment's weights unless the request names others."""
        form = await request.form(max_part_size=max_bytes)
        files, data = [], {"weights": weights}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((name, (value.filename or name, await value.read(), value.content_type)))
            else:
                data[name] = value
        built = httpx.Request("POST", "http://x", files=files, data=data)
        return built.read(), {"content-type": built.headers["content-type"]}

    async def predict_module(dep: Deployment, request: Request) -> Response:
        ctype = request.headers.get("content-type", "")
        headers = {"content-type": ctype} if ctype else {}
        accept = answer_type(request.headers.get("accept", ""))
        weights = dep.spec.get("weights")
        if weights and ctype.startswith("multipart/form-data"):
            if int(request.headers.get("content-length") or 0) > max_bytes:
                raise too_large()
            body, headers = await with_weights(request, weights)
        else:
            body = await read_body(request)
        if ctype.startswith("application/json"):
            try:
                fields = json.loads(body or b"{}")
            except ValueError:
                raise PlatformError(400, "the body is not valid JSON") from None
            if not isinstance(fields, dict):
                raise PlatformError(400, "send a JSON object of the module's predict arguments")
            if weights:
                fields.setdefault("weights", weights)
            if isinstance(fields.get("accept"), str):
                accept = answer_type(fields.pop("accept"))
            body, headers = form_body(fields)
        params = {}
        if accept:  # both: DEEPaaS reads ``accept`` from the header or the query, as the module declares it
            headers["accept"] = params["accept"] = accept
        model = dep.endpoints.get("model") or dep.spec["entry_point"]
        return await forward(dep, "POST", f"/v2/models/{model}/predict/", params, headers, body, stream=False)

    async def fields_and_files(request: Request) -> tuple[dict[str, Any], dict[str, Value]]:
        """A predict request's arguments: multipart (files and fields) or a JSON object of fields."""
        if int(request.headers.get("content-length") or 0) > max_bytes:
            raise too_large()
        fields: dict[str, Any] = {}
        files: dict[str, Value] = {}
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_part_size=max_bytes)
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files[name] = Value(
                        content=await value.read(),
                        filename=value.filename or name,
                        content_type=value.content_type or "application/octet-stream",
                    )
                else:
                    fields[name] = value
            return fields, files
        try:
            fields = json.loads(await read_body(request) or b"{}")
        except ValueError:
            raise PlatformError(400, "the body is not valid JSON") from None
        if not isinstance(fields, dict):
            raise PlatformError(400, "send a JSON object of predict arguments, or a multipart file upload")
        return fields, files

    @router.post("/{dep_id}/predict", summary="Predict with a deployment: a module, a serverless service, a pipeline")
    async def predict(dep_id: str, request: Request, user: User) -> Response:
        dep = api.visible(running.get(dep_id), user)
        if dep.kind == "module":
            return await predict_module(running_module(dep_id, user), request)
        fields, files = await fields_and_files(request)
        answer = await registry.of(dep).predict(dep, fields, files)
        if answer.content is not None:
            return Response(answer.content, media_type=answer.content_type)
        return JSONResponse(answer.json)

    @router.get(
        "/{dep_id}/metrics", summary="Metric histories of a training (from its MLflow run)", response_model=Metrics
    )
    async def metrics(dep_id: str, user: User) -> dict[str, Any]:
        dep = api.deployment(dep_id, user)
        run_id = dep.endpoints.get("mlflow_run_id") or await run_of(dep)
        if not run_id:
            return {"run_id": None, "metrics": {}}
        base = f"http://127.0.0.1:{settings.mlflow_backend_port}/services/mlflow/api/2.0/mlflow"
        run = (await client.get(f"{base}/runs/get", params={"run_id": run_id})).json().get("run", {})
        out: dict[str, list[dict[str, Any]]] = {}
        for m in run.get("data", {}).get("metrics", []):
            h = await client.get(f"{base}/metrics/get-history", params={"run_id": run_id, "metric_key": m["key"]})
            out[m["key"]] = sorted(
                ({"step": p.get("step", 0), "value": p["value"]} for p in h.json().get("metrics", [])),
                key=lambda p: p["step"],
            )
        return {"run_id": run_id, "status": run.get("info", {}).get("status"), "metrics": out}

    async def run_of(dep: Deployment) -> str | None:
        """The MLflow run of a training still running (its runner prints the id in its log)."""
        if dep.kind != "training" or not dep.backend_state:
            return None
        for line in (await registry.of(dep).logs(dep, tail=200)).splitlines():
            if line.startswith("mlflow run "):
                return line.split()[2]
        return None

    return router


def _read_from(path: Path, offset: int) -> tuple[str, int]:
    """What the log has after ``offset``, and where it ends now."""
    if not path.is_file():
        return "", offset
    with open(path, errors="replace") as f:
        f.seek(offset)
        return f.read(), f.tell()


async def _follow_logs(db_url: str, dep_id: str, tail: int | None) -> AsyncIterator[str]:
    """Server-sent events: one ``data:`` per log line, then ``event: end`` with the final status."""
    offset = 0
    first = True
    while True:
        dep = deps.get(db_url, dep_id)
        path = Path((dep.backend_state if dep else {}).get("log_path", ""))
        chunk, offset = await asyncio.to_thread(_read_from, path, offset)
        if chunk:
            lines = chunk.splitlines()
            if first and tail:
                lines = list(deque(lines, maxlen=tail))
            for line in lines:
                yield f"data: {line}\n\n"
        first = False
        if dep is None or dep.status not in ACTIVE_STATUSES:
            status = dep.status if dep else "gone"
            yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
            return
        await asyncio.sleep(0.5)
