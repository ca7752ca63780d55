"""Pipelines (kind ``pipeline``): predictions chained through several deployments of one user.

A pipeline is a list of steps, each a running ``module`` (local DEEPaaS server)
or ``serverless`` (OSCAR service) deployment of the same owner. The output of a
step becomes the input of the next: a file (e.g. the PNG an image-preparation
module returns, asked for with ``accept``) goes into the next module's file
argument, JSON goes into one of its plain arguments. The chain is checked when
the pipeline is created, from the modules' own predict arguments, so a
mismatch is a 400 at creation rather than a failure at the second step.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ai4lab.catalog.model import CatalogItem
from ai4lab.catalog.registry import Viewer
from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment
from ai4lab.core.envs import EnvBuildError
from ai4lab.core.errors import PlatformError
from ai4lab.deploy.lifecycle import Caller, DeploymentRequest, Lifecycle, Platform, Value
from ai4lab.deploy.predict_args import describe_predict

STEP_KINDS = ("module", "serverless")


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: str = Field(description="id of a running module or serverless deployment of yours")
    input_field: str | None = Field(
        default=None,
        description="predict argument that receives the previous output (or your upload for "
        "the first step); default: the module's file argument",
    )
    output: Literal["json", "file"] = Field(
        default="json", description="what this step passes on: its JSON predictions or the file it returns"
    )
    accept: str | None = Field(default=None, description="output=file: the media type to ask for (default image/png)")
    fields: dict[str, Any] = Field(default_factory=dict, description="fixed predict arguments of this step")


class PipelineRequest(DeploymentRequest):
    kind: Literal["pipeline"]
    title: str = Field(default="", description="a title (default: the steps' modules, joined by arrows)")
    steps: list[Step] = Field(min_length=2, description="at least 2 steps, run in this order")

    def backend(self, platform: Platform) -> str:
        return "pipeline"


def _ext(content_type: str) -> str:
    return {"image/png": "png", "image/jpeg": "jpg", "application/json": "json"}.get(content_type, "bin")


class Pipelines(Lifecycle):
    """Pipelines run in the platform API itself: each prediction calls the steps' deployments in turn."""

    kinds: ClassVar[tuple[str, ...]] = ("pipeline",)
    backend: ClassVar[str] = "pipeline"
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = (PipelineRequest,)

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.http = httpx.AsyncClient(timeout=300)

    def items(self, item_id: str, owner: str) -> CatalogItem | None:
        """The catalog item a step's deployment runs, as its owner sees the catalog."""
        vo = Caller.of(self.settings, owner).vo
        return self.platform.catalog.get("module", item_id, Viewer(name=owner, vo=vo, admin=True))

    # -- create -------------------------------------------------------------------------
    async def create(self, request: PipelineRequest, caller: Caller) -> Deployment:
        steps, owner = request.steps, caller.name
        described = []
        for n, step in enumerate(steps, 1):
            dep = deps.get(self.settings.db_url, step.deployment)
            if dep is None or dep.owner != owner:
                raise PlatformError(404, f"step {n}: no deployment {step.deployment!r}")
            if dep.kind not in STEP_KINDS:
                raise PlatformError(
                    400,
                    f"step {n}: deployment {dep.id} is a {dep.kind}; steps are {' or '.join(STEP_KINDS)} deployments",
                )
            args = await self._args(dep, owner)
            described.append((dep, args))
        for n, (step, (dep, args)) in enumerate(zip(steps, described, strict=True), 1):
            self._check_step(n, step, dep, args, steps[n - 2] if n > 1 else None)
        spec: dict[str, Any] = {
            "title": request.title or " → ".join(d.spec.get("item", d.name) for d, _ in described),
            "steps": [
                s.model_dump(exclude_none=True) | {"kind": d.kind, "item": d.spec.get("item", d.name)}
                for s, (d, _) in zip(steps, described, strict=True)
            ],
        }
        for s, (_, args) in zip(spec["steps"], described, strict=True):
            if not s.get("input_field") and args is not None:
                s["input_field"] = next((a["name"] for a in args if a["file"]), None)
        dep = deps.create(
            self.settings.db_url,
            owner=owner,
            kind="pipeline",
            name=spec["title"][:255],
            spec=spec,
            backend="pipeline",
            status="running",
            vo=caller.vo,
        )
        public = f"{self.settings.public_url}/services/ai4lab/deployments/{dep.id}"
        return (
            deps.set_status(self.settings.db_url, dep.id, "running", "", endpoints={"predict": f"{public}/predict"})
            or dep
        )

    async def _args(self, dep: Deployment, owner: str) -> list[dict[str, Any]] | None:
        """The step module's predict arguments (None when it has no local package to read them from)."""
        item: CatalogItem | None = self.items(dep.spec.get("item", dep.name), owner)
        if item is None or not item.run.package_path or not item.run.entry_point:
            return None
        try:
            return await asyncio.to_thread(describe_predict, item, self.settings.envs_dir)
        except (EnvBuildError, RuntimeError, OSError) as e:
            raise PlatformError(500, f"the predict arguments of {item.id} could not be read: {e}") from None

    @staticmethod
    def _check_step(n: int, step: Step, dep: Deployment, args: list[dict[str, Any]] | None, prev: Step | None) -> None:
        if args is None:
            return  # a module known only by its image: the cluster will tell
        by_name = {a["name"]: a for a in args}
        item = dep.spec.get("item", dep.name)
        wants_file = prev is None or prev.output == "file"
        field = step.input_field or next((a["name"] for a in args if a["file"]), None)
        if field is None:
            raise PlatformError(
                400,
                f"step {n}: {item} takes no file; say which argument gets the "
                f"{'upload' if prev is None else 'previous output'} with input_field",
            )
        if field not in by_name:
            raise PlatformError(
                400, f"step {n}: {item} has no argument {field!r}; it takes {', '.join(sorted(by_name))}"
            )
        if prev is not None and by_name[field]["file"] != wants_file:
            what = "a file" if wants_file else "JSON"
            raise PlatformError(
                400,
                f"step {n - 1} passes {what} but {item}'s {field!r} is "
                f"{'a file argument' if by_name[field]['file'] else 'not a file argument'}",
            )
        if step.output == "file" and "accept" not in by_name:
            raise PlatformError(
                400, f"step {n}: {item} returns JSON only (it has no 'accept' argument): use output: json"
            )
        unknown = sorted(set(step.fields) - set(by_name))
        if unknown:
            raise PlatformError(400, f"step {n}: {item} has no argument(s) {', '.join(unknown)}")

    # -- run ----------------------------------------------------------------------------
    async def run(self, pipeline: Deployment, upload: Value, fields: dict[str, Any]) -> dict[str, Any]:
        """Run the chain on one input; the report has the final predictions and each step's output and time."""
        steps = [
            Step.model_validate({k: v for k, v in s.items() if k not in ("kind", "item")})
            for s in pipeline.spec["steps"]
        ]
        value, report, t_start = upload, [], time.monotonic()
        for n, (step, raw) in enumerate(zip(steps, pipeline.spec["steps"], strict=True), 1):
            dep = deps.get(self.settings.db_url, step.deployment)
            if dep is None or dep.owner != pipeline.owner:
                raise PlatformError(404, f"step {n}: deployment {step.deployment} no longer exists")
            if dep.status != "running":
                raise PlatformError(409, f"step {n}: deployment {dep.id} ({raw['item']}) is {dep.status}")
            call_fields = dict(step.fields) | (fields if n == 1 else {})
            files: dict[str, tuple[str, bytes, str]] = {}
            target = step.input_field or raw.get("input_field")
            if value.content is not None:
                if not target:
                    raise PlatformError(400, f"step {n}: {raw['item']} has no argument for a file")
                files[target] = (value.filename, value.content, value.content_type)
            elif target:
                call_fields[target] = value.json if isinstance(value.json, str) else json.dumps(value.json)
            else:
                call_fields |= value.json if isinstance(value.json, dict) else {}
            if step.output == "file":
                call_fields.setdefault("accept", step.accept or "image/png")
            t0 = time.monotonic()
            try:
                value = await self._call(dep, call_fields, files)
            except PlatformError as e:
                raise PlatformError(e.status, f"step {n} ({raw['item']}): {e}") from None
            value.filename = f"step{n}.{_ext(value.content_type)}"
            report.append(
                {
                    "step": n,
                    "deployment": dep.id,
                    "kind": dep.kind,
                    "item": raw["item"],
                    "seconds": round(time.monotonic() - t0, 3),
                    "output": value.report(),
                }
            )
        return {
            "status": "OK",
            "predictions": value.report(),
            "steps": report,
            "seconds": round(time.monotonic() - t_start, 3),
        }

    async def predict(self, dep: Deployment, fields: dict[str, Any], files: dict[str, Value]) -> Value:
        """A prediction through the pipeline: its input is one file; the answer is the run's report."""
        if len(files) != 1:
            raise PlatformError(
                400, "send the pipeline's input as one file (multipart/form-data), e.g. curl -F file=@digit.png"
            )
        return Value(json=await self.run(dep, next(iter(files.values())), fields))

    async def _call(self, dep: Deployment, fields: dict[str, Any], files: dict[str, tuple[str, bytes, str]]) -> Value:
        """One step: a module's DEEPaaS server (wherever its lifecycle runs it), or another predicting deployment."""
        step = self.platform.registry.of(dep)
        if dep.kind != "module":
            answer = await step.predict(
                dep, fields, {k: Value(content=f[1], filename=f[0], content_type=f[2]) for k, f in files.items()}
            )
            return answer if answer.content is not None else Value(json=answer.json["predictions"])
        step.touch(dep.id)
        accept = fields.pop("accept", "application/json")  # DEEPaaS reads it from the Accept header
        if dep.spec.get("weights"):
            fields.setdefault("weights", dep.spec["weights"])
        model = dep.endpoints.get("model") or dep.spec["entry_point"]
        url = f"{step.api_base(dep)}/v2/models/{model}/predict/"
        data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        try:
            resp = await self.http.post(url, data=data, files=files or None, headers={"Accept": accept})
        except httpx.TransportError as e:
            raise PlatformError(502, f"the deployment does not answer: {e}") from None
        ctype = resp.headers.get("content-type", "").split(";")[0]
        if resp.status_code != 200:
            raise PlatformError(400 if 400 <= resp.status_code < 500 else 502, _reason(resp))
        if ctype == "application/json":
            body = resp.json()
            return Value(json=body.get("predictions", body) if isinstance(body, dict) else body)
        return Value(content=resp.content, content_type=ctype or "application/octet-stream")


def _reason(resp: httpx.Response) -> str:
    """The reason DEEPaaS (or aiohttp) gave for a refusal, in one line."""
    try:
        body = resp.json()
        if isinstance(body, dict):
            return str(body.get("message") or body.get("detail") or body.get("errors") or body)
    except ValueError:
        pass
    text = resp.text.strip()
    return text.splitlines()[-1] if text else f"HTTP {resp.status_code}"
