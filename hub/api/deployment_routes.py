"""Module deployments in the platform API: start, the authenticated proxy to each DEEPaaS
server (API, Swagger UI), predictions, and one-shot tries of a catalog module."""

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from ai4lab.core import accounts, isolation
from ai4lab.core import deployments as deps
from ai4lab.api.auth import HubUser
from ai4lab.api.mlflow_gateway import HOP_HEADERS
from ai4lab.catalog import Catalog
from ai4lab.catalog.deploy_config import check_choice, deploy_config
from ai4lab.catalog.model import CatalogItem
from ai4lab.catalog.registry import Viewer
from ai4lab.core.db import Deployment
from ai4lab.deploy import module_env, runner, runner_result
from ai4lab.deploy.module_code import working_copy
from ai4lab.deploy.cluster import ClusterDeployments, ClusterError
from ai4lab.deploy.modules import ModuleDeployments
from ai4lab.deploy.trainings import TrainingError, Trainings
from ai4lab.core.envs import EnvBuildError, ensure_env, env_bin
from ai4lab.core.isolation import give_tree
from ai4lab.core.settings import Settings
from ai4lab.core.storage import StoragePathError, resolve_in_storage

HOP = HOP_HEADERS | {"content-encoding"}


PACKAGE_SKIP = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache", ".mypy_cache"}


def package_folder(settings: Settings, path: Path) -> Path:
    """The real folder of a module's package; StoragePathError when a published one left its owner's storage.

    Why: a published package stays in its owner's storage (``storage/<owner>/...``),
    where the owner can later replace the folder, or a part of it, by a symlink to
    files of the platform. Packages elsewhere (bundled, from catalog sources) are
    the operator's and are used as they are.
    """
    where = Path(os.path.abspath(path))
    for storage in (Path(os.path.abspath(settings.storage_root)), Path(os.path.realpath(settings.storage_root))):
        if storage in where.parents:  # the storage folder may itself be reached through a link
            owner, *rest = where.relative_to(storage).parts
            return resolve_in_storage(storage / owner, "/".join(rest))
    return path


def package_tarball(folder: Path) -> bytes:
    """A module's source folder as .tar.gz, without caches and virtual environments."""
    import io
    import tarfile

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if PACKAGE_SKIP & set(parts) or info.name.endswith(".pyc") else info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name, filter=keep)
    return buf.getvalue()


def answer_type(accept: str) -> str:
    """The content type asked for a module's answer (its DEEPaaS ``accept`` argument), '' for JSON or any.

    Only one plain media type counts: a browser's ``text/html,...;q=0.9`` is no choice the module offers.
    """
    accept = accept.strip()
    if not accept or "," in accept or ";" in accept or accept in ("*/*", "application/json"):
        return ""
    return accept


def form_body(fields: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """JSON predict arguments as the form DEEPaaS parses: a list is the field repeated, anything else text.

    ``{"x": 3, "flag": true, "labels": ["a", "b"], "opts": {"k": 1}}`` gives ``x=3``,
    ``flag=true``, ``labels=a``, ``labels=b`` and ``opts={"k": 1}`` (DEEPaaS modules
    take dicts as JSON strings).
    """
    def text(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v)

    parts = [(k, (None, text(item))) for k, v in fields.items() for item in (v if isinstance(v, list) else [v])]
    built = httpx.Request("POST", "http://x", files=parts)
    return built.read(), {"content-type": built.headers["content-type"]}


def cpu_only(form: dict[str, Any], hardware: dict[str, Any], asked: dict[str, Any], what: str) -> list[str]:
    """The form's warnings for a deployment that runs without GPUs on this backend; 400 if GPUs were asked.

    Why: the form's default GPU count is what the metadata recommends; a
    deployment kind that cannot have GPUs here still runs, on CPU, and says so.
    """
    if asked.get("gpu_num"):
        raise HTTPException(400, f"GPUs for {what} on the local backend are not offered yet: ask for gpu_num 0")
    warnings = list(form["warnings"])
    recommended = hardware.get("gpu_num") or 0
    hardware["gpu_num"] = 0
    if recommended and not any("GPU" in w for w in warnings):
        warnings.append(f"this {form['item']['kind']} recommends {recommended} GPU{'s' if recommended > 1 else ''}; "
                        f"it will run on CPU and may be slow ({what} get no GPU on this backend yet)")
    return warnings


class ModuleRoutes:
    def __init__(
        self,
        prefix: str,
        settings: Settings,
        catalog: Catalog,
        modules: ModuleDeployments,
        trainings: Trainings,
        current_user: Callable[..., Awaitable[HubUser]],
        visible: Callable[[Deployment | None, HubUser], Deployment],
        cluster: ClusterDeployments | None = None,
    ) -> None:
        self.prefix, self.settings, self.catalog, self.modules = prefix, settings, catalog, modules
        self.cluster = cluster
        self.trainings = trainings
        self.visible = visible
        # other kinds served by POST /deployments/{id}/predict (serverless, pipeline): kind -> handler
        self.predict_kinds: dict[str, Callable[[Deployment, Request, HubUser], Awaitable[Response]]] = {}
        self.max_bytes = int(settings.max_upload_mb * 2**20)
        self.client = httpx.AsyncClient(timeout=300)
        self.router = APIRouter(prefix=prefix, tags=["deployments"])
        User = Annotated[HubUser, Depends(current_user)]
        r = self.router

        @r.api_route("/deployments/{dep_id}/api/{path:path}",
                     methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
                     summary="The deployment's own API (DEEPaaS, Swagger UI at ui), for its owner")
        async def proxy(dep_id: str, path: str, request: Request, user: User) -> Response:
            dep = self.running(dep_id, user)
            body = await self.read_body(request)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
            return await self.forward(dep, request.method, request.url.path, request.query_params, headers, body)

        @r.post("/deployments/{dep_id}/predict", summary="Predict with a module deployment (files or JSON)")
        async def predict(dep_id: str, request: Request, user: User) -> Response:
            other = self.modules.running(dep_id)
            if other is not None and other.kind in self.predict_kinds:
                return await self.predict_kinds[other.kind](self.visible(other, user), request, user)
            dep = self.running(dep_id, user)
            ctype = request.headers.get("content-type", "")
            headers = {"content-type": ctype} if ctype else {}
            accept = answer_type(request.headers.get("accept", ""))
            weights = dep.spec.get("weights")
            if weights and ctype.startswith("multipart/form-data"):
                if int(request.headers.get("content-length") or 0) > self.max_bytes:
                    raise self.too_large()
                body, headers = await self.with_weights(request, weights)
            else:
                body = await self.read_body(request)
            if ctype.startswith("application/json"):
                try:
                    fields = json.loads(body or b"{}")
                except ValueError:
                    raise HTTPException(400, "the body is not valid JSON") from None
                if not isinstance(fields, dict):
                    raise HTTPException(400, "send a JSON object of the module's predict arguments")
                if dep.spec.get("weights"):
                    fields.setdefault("weights", dep.spec["weights"])
                if isinstance(fields.get("accept"), str):
                    accept = answer_type(fields.pop("accept"))
                body, headers = form_body(fields)
            params = {}
            if accept:  # both: DEEPaaS reads ``accept`` from the header or the query, as the module declares it
                headers["accept"] = params["accept"] = accept
            model = dep.endpoints.get("model") or dep.spec["entry_point"]
            path = f"{self.api_path(dep.id)}/v2/models/{model}/predict/"
            return await self.forward(dep, "POST", path, params, headers, body, stream=False)

        @r.get("/deployments/{dep_id}/metrics", summary="Metric histories of a training (from its MLflow run)")
        async def metrics(dep_id: str, user: User) -> dict[str, Any]:
            dep = self.visible(deps.get(self.settings.db_url, dep_id), user)
            run_id = dep.endpoints.get("mlflow_run_id") or await self.run_of(dep)
            if not run_id:
                return {"run_id": None, "metrics": {}}
            base = f"http://127.0.0.1:{self.settings.mlflow_backend_port}/services/mlflow/api/2.0/mlflow"
            run = (await self.client.get(f"{base}/runs/get", params={"run_id": run_id})).json().get("run", {})
            out: dict[str, list[dict[str, Any]]] = {}
            for m in run.get("data", {}).get("metrics", []):
                h = await self.client.get(f"{base}/metrics/get-history", params={"run_id": run_id, "metric_key": m["key"]})
                out[m["key"]] = sorted(({"step": p.get("step", 0), "value": p["value"]} for p in h.json().get("metrics", [])),
                                       key=lambda p: p["step"])
            return {"run_id": run_id, "status": run.get("info", {}).get("status"), "metrics": out}

        @r.get("/catalog/modules/{item_id}/train-args", summary="The module's training arguments (types, ranges)")
        async def train_args(item_id: str, user: User) -> dict[str, Any]:
            item = self.catalog.get("module", item_id, Viewer(name=user.name, admin=user.admin))
            if item is None:
                raise HTTPException(404, f"no module {item_id!r} in the catalog")
            if not item.run.package_path:
                raise HTTPException(400, f"{item_id} has no local package")
            try:
                return await asyncio.to_thread(self.trainings.describe_args, item)
            except TrainingError as e:
                raise HTTPException(e.status, str(e)) from None

        @r.get("/catalog/modules/{item_id}/package", summary="The module's source package as .tar.gz (open in IDE)")
        async def package(item_id: str, user: User) -> Response:
            item = self.catalog.get("module", item_id, Viewer(name=user.name, admin=user.admin))
            if item is None:
                raise HTTPException(404, f"no module {item_id!r} in the catalog")
            if not item.run.package_path:
                code = item.links.get("source_code")
                where = f": clone its code from {code}" if code else ""
                raise HTTPException(400, f"{item_id} has no package on this platform{where}")
            try:
                folder = package_folder(self.settings, Path(item.run.package_path))
            except StoragePathError as e:
                raise HTTPException(400, f"{item_id}: {e}") from None
            data = await asyncio.to_thread(package_tarball, folder)
            return Response(data, media_type="application/gzip",
                            headers={"Content-Disposition": f'attachment; filename="{item_id}.tar.gz"'})

        @r.post("/catalog/modules/{item_id}/try", summary="One prediction without a deployment (try me)")
        async def try_module(item_id: str, request: Request, user: User) -> Response:
            item = self.catalog.get("module", item_id, Viewer(name=user.name, admin=user.admin))
            if item is None:
                raise HTTPException(404, f"no module {item_id!r} in the catalog")
            if not item.run.package_path or not item.run.entry_point:
                raise HTTPException(400, f"{item_id} has no local package: deploy its image on a cluster backend")
            if int(request.headers.get("content-length") or 0) > self.max_bytes:
                raise self.too_large()
            form = await request.form(max_part_size=self.max_bytes)
            return await self.oneshot(item, form, user.name, request.headers.get("accept", ""))

    # -- helpers ----------------------------------------------------------------------
    async def run_of(self, dep: Deployment) -> str | None:
        """The MLflow run of a training still running (its runner prints the id in its log)."""
        if dep.kind != "training" or not dep.backend_state:
            return None
        text = await self.trainings.backend.logs(dep.backend_state, tail=200)
        for line in text.splitlines():
            if line.startswith("mlflow run "):
                return line.split()[2]
        return None

    async def with_weights(self, request: Request, weights: str) -> tuple[bytes, dict[str, str]]:
        """The multipart body again, with the deployment's weights unless the request names others."""
        form = await request.form(max_part_size=self.max_bytes)
        files, data = [], {"weights": weights}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((name, (value.filename or name, await value.read(), value.content_type)))
            else:
                data[name] = value
        built = httpx.Request("POST", "http://x", files=files, data=data)
        return built.read(), {"content-type": built.headers["content-type"]}

    def account_and_item(self, item_id: str | None, user: HubUser, verb: str) -> tuple[Any, CatalogItem]:
        """The caller's account and the module they name (400 without one, 404 when not visible)."""
        acc = accounts.get_user(self.settings.db_url, user.name) or accounts.ensure_user(
            self.settings.db_url, user.name, admin=user.admin)
        if not item_id:
            raise HTTPException(400, f"say which module to {verb}: item=<catalog id>")
        item = self.catalog.get("module", item_id, Viewer(name=user.name, vo=acc.vo, admin=user.admin))
        if item is None:
            raise HTTPException(404, f"no module {item_id!r} in the catalog")
        return acc, item

    async def create_on_cluster(self, body: Any, user: HubUser) -> dict[str, Any]:
        """A module or training as a Nomad job, within the deploy form the cluster offers this user."""
        assert self.cluster is not None
        if body.kind not in ("module", "training"):
            raise HTTPException(400, f"{body.kind} deployments do not run on the Nomad backend yet")
        acc, item = self.account_and_item(body.item, user, "deploy" if body.kind == "module" else "train")
        offer = await self.cluster.offer(acc.vo)
        form = deploy_config(item, quota=self.settings.quotas[acc.role], role=acc.role, gpus=offer["gpus"],
                             purpose="training" if body.kind == "training" else "inference", backends=["nomad"],
                             datacenters=offer["datacenters"], hard=self.settings.resources_hard)
        hardware = self.chosen_hardware(form, body.hardware)
        try:
            dep = await self.cluster.create(user.name, item, body.kind, hardware, title=body.title, vo=acc.vo,
                                            args=body.args)
        except ClusterError as e:
            raise HTTPException(e.status, str(e)) from None
        return dep.to_dict()

    async def create_training(self, body: Any, user: HubUser) -> dict[str, Any]:
        acc, item = self.account_and_item(body.item, user, "train" if body.kind == "training" else "run")
        form = deploy_config(item, quota=self.settings.quotas[acc.role], role=acc.role, gpus=self.settings.gpus,
                             purpose="training", hard=self.settings.resources_hard)
        problems = check_choice(form, body.hardware)
        if problems:
            raise HTTPException(400, "hardware: " + "; ".join(problems))
        hardware = {k: f["value"] for k, f in form["hardware"].items() if "range" in f} | body.hardware
        try:
            if body.kind == "batch":
                if not body.input or not body.output:
                    raise TrainingError("batch jobs need input and output folders in your storage")
                dep = await self.trainings.create_batch(
                    user.name, item, input_path=body.input, output_path=body.output, fields=body.fields,
                    file_field=body.file_field, weights=body.weights, title=body.title)
            else:
                dep = await self.trainings.create(user.name, item, dataset=body.dataset, args=body.args,
                                                  hardware=hardware, init_weights=body.init_weights,
                                                  title=body.title, warnings=form["warnings"])
        except TrainingError as e:
            raise HTTPException(e.status, str(e)) from None
        return dep.to_dict()

    @staticmethod
    def chosen_hardware(form: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
        """The form's values overridden by the user's choice; 400 with the reasons when it does not fit."""
        if not form["deployable"]:
            raise HTTPException(400, "cannot deploy: " + "; ".join(form["problems"]))
        problems = check_choice(form, chosen)
        if problems:
            raise HTTPException(400, "hardware: " + "; ".join(problems))
        return {k: f["value"] for k, f in form["hardware"].items()} | chosen

    def api_path(self, dep_id: str) -> str:
        return f"{self.prefix}/deployments/{dep_id}/api"

    def running(self, dep_id: str, user: HubUser) -> Deployment:
        dep = self.visible(self.modules.running(dep_id), user)
        if dep.kind != "module":
            raise HTTPException(400, f"deployment {dep_id} is a {dep.kind}, not a module")
        if dep.status != "running":
            reason = f": {dep.status_reason}" if dep.status_reason else ""
            raise HTTPException(409, f"deployment {dep_id} is {dep.status}{reason}")
        self.modules.touch(dep_id)
        return dep

    def too_large(self) -> HTTPException:
        return HTTPException(413, f"upload larger than {self.settings.max_upload_mb:g} MB")

    async def read_body(self, request: Request) -> bytes:
        if int(request.headers.get("content-length") or 0) > self.max_bytes:
            raise self.too_large()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise self.too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    async def forward(self, dep: Deployment, method: str, path: str, params: Any, headers: dict[str, str],
                      body: bytes, stream: bool = True) -> Response:
        if dep.backend == "nomad":  # DEEPaaS in the module's image serves at its root
            url = dep.endpoints["api"] + path.removeprefix(self.api_path(dep.id))
        else:
            url = self.modules.upstream(dep) + path
        try:
            req = self.client.build_request(method, url, params=params, headers=headers, content=body)
            upstream = await self.client.send(req, stream=True)
        except httpx.TransportError as e:
            raise HTTPException(502, f"the deployment does not answer: {e}") from None
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
        if stream:
            return StreamingResponse(upstream.aiter_bytes(), status_code=upstream.status_code, headers=out,
                                     background=BackgroundTask(upstream.aclose))
        content = await upstream.aread()
        await upstream.aclose()
        return Response(content, status_code=upstream.status_code, headers=out)

    def create(self, body: Any, user: HubUser) -> dict[str, Any]:
        acc, item = self.account_and_item(body.item, user, "deploy")
        if not item.run.package_path or not item.run.entry_point:
            raise HTTPException(400, f"{item.id} has no local package with a deepaas.v2.model entry point: "
                                     "it can only run from its image on a cluster backend")
        form = deploy_config(item, quota=self.settings.quotas[acc.role], role=acc.role, gpus=self.settings.gpus,
                             hard=self.settings.resources_hard)
        hardware = self.chosen_hardware(form, body.hardware)
        warnings = cpu_only(form, hardware, body.hardware, "module deployments")
        weights = None
        if body.weights and "/" not in body.weights and "." not in body.weights:
            try:
                weights = str(self.trainings.model_file(user.name, body.weights))
            except TrainingError as e:
                raise HTTPException(e.status, str(e)) from None
        elif body.weights:
            try:
                path = resolve_in_storage(self.settings.user_storage(user.name), body.weights.removeprefix("storage/"))
            except StoragePathError as e:
                raise HTTPException(400, f"weights: {e}") from None
            if not path.is_file():
                raise HTTPException(400, f"no weights file {body.weights!r} in your storage")
            weights = str(path)
        dep = self.modules.create(user.name, item, hardware, title=body.title, weights=weights, vo=acc.vo,
                                  warnings=warnings)
        return dep.to_dict()

    async def oneshot(self, item: CatalogItem, form: Any, owner: str, accept: str = "") -> Response:
        """One prediction in the module's environment, run as ``owner`` (the module's code sees their inputs only)."""
        work = Path(tempfile.mkdtemp(prefix="ai4lab-try-"))
        try:
            fields: dict[str, str | list[str]] = {}
            files: dict[str, dict[str, str | None]] = {}
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    target = work / f"{len(files)}-{Path(value.filename or 'upload').name}"
                    with open(target, "wb") as f:
                        shutil.copyfileobj(value.file, f)
                    files[name] = {"path": str(target), "filename": value.filename,
                                   "content_type": value.content_type}
                elif name in fields:  # repeated: a list argument, as DEEPaaS reads it
                    before = fields[name]
                    fields[name] = [*before, value] if isinstance(before, list) else [before, value]
                else:
                    fields[name] = value
            if (wanted := answer_type(accept)) and "accept" not in fields:
                fields["accept"] = wanted  # as DEEPaaS: the answer's type from the Accept header
            try:
                env = await asyncio.to_thread(ensure_env, Path(item.run.package_path or ""),
                                              self.settings.envs_dir)
            except EnvBuildError as e:
                raise HTTPException(500, f"the module's environment could not be built: {e}") from None
            output = work / "answer"
            request = json.dumps({"model": item.run.entry_point, "fields": fields, "files": files,
                                  "output": str(output)})
            backend = self.trainings.backend
            ident = await asyncio.to_thread(backend.identity, owner)
            give_tree(work, ident)
            repo = await asyncio.to_thread(working_copy, env, work, ident)
            job_env = await asyncio.to_thread(module_env, self.settings, backend, owner, env, work, repo=repo,
                                              app=item.run.entry_point)
            proc = await asyncio.to_thread(
                isolation.run, ident, [str(env_bin(env, "python")), str(runner(self.settings, "oneshot.py"))],
                input=request, timeout=300, cwd=repo, env=isolation.user_env(ident, work, job_env),
            )
            result = runner_result(proc.stdout)
            if result is None:
                tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
                raise HTTPException(500, f"the module crashed (exit code {proc.returncode}): {tail}")
            if result["status"] != "OK":
                return JSONResponse({"detail": result["reason"], "status": result["code"]},
                                    status_code=result["code"])
            if "file" in result:  # a non-JSON answer, passed through as DEEPaaS sends it
                try:
                    data = await asyncio.to_thread(isolation.read_written_by, output, ident.uid, self.max_bytes * 4)
                except OSError as e:
                    raise HTTPException(500, f"the module's answer could not be read: {e}") from None
                return Response(data, media_type=result["content_type"])
            return JSONResponse({"status": "OK", "predictions": result["predictions"]})
        finally:
            shutil.rmtree(work, ignore_errors=True)
