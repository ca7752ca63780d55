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
import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ai4lab.core import deployments as deps
from ai4lab.catalog.model import CatalogItem
from ai4lab.core.db import Deployment
from ai4lab.deploy.modules import ModuleDeployments, api_prefix
from ai4lab.deploy.predict_args import describe_predict
from ai4lab.deploy.serverless import InferenceError, ServerlessDeployments
from ai4lab.core.envs import EnvBuildError
from ai4lab.core.settings import Settings

STEP_KINDS = ("module", "serverless")
#: Largest file output echoed back (base64) in a pipeline's per-step report.
ECHO_BYTES = 64 * 1024


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: str = Field(description="id of a running module or serverless deployment of yours")
    input_field: str | None = Field(
        default=None, description="predict argument that receives the previous output (or your upload for "
        "the first step); default: the module's file argument")
    output: Literal["json", "file"] = Field(
        default="json", description="what this step passes on: its JSON predictions or the file it returns")
    accept: str | None = Field(default=None, description="output=file: the media type to ask for (default image/png)")
    fields: dict[str, Any] = Field(default_factory=dict, description="fixed predict arguments of this step")


@dataclass
class Value:
    """What flows between steps: JSON, or a file."""

    json: Any = None
    content: bytes | None = None
    content_type: str = "application/json"
    filename: str = "input"

    def report(self) -> Any:
        if self.content is None:
            return self.json
        out: dict[str, Any] = {"content_type": self.content_type, "bytes": len(self.content)}
        if len(self.content) <= ECHO_BYTES:
            out["base64"] = base64.b64encode(self.content).decode()
        return out


def _ext(content_type: str) -> str:
    return {"image/png": "png", "image/jpeg": "jpg", "application/json": "json"}.get(content_type, "bin")


class Pipelines:
    def __init__(self, settings: Settings, modules: ModuleDeployments, serverless: ServerlessDeployments,
                 items: Any) -> None:
        """``items(item_id, owner)`` returns the catalog item a step's deployment runs (or None)."""
        self.settings, self.modules, self.serverless, self.items = settings, modules, serverless, items
        self.http = httpx.AsyncClient(timeout=300)

    # -- create -------------------------------------------------------------------------
    async def create(self, owner: str, title: str, raw_steps: list[Any], admin: bool = False,
                     vo: str | None = None) -> Deployment:
        try:
            steps = [Step.model_validate(s) for s in raw_steps]
        except ValidationError as e:
            raise InferenceError(400, f"steps: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
        if len(steps) < 2:
            raise InferenceError(400, "a pipeline needs at least 2 steps: [{deployment, input_field, output}, ...]")
        described = []
        for n, step in enumerate(steps, 1):
            dep = deps.get(self.settings.db_url, step.deployment)
            if dep is None or (dep.owner != owner and not admin):
                raise InferenceError(404, f"step {n}: no deployment {step.deployment!r}")
            if dep.kind not in STEP_KINDS:
                raise InferenceError(400, f"step {n}: deployment {dep.id} is a {dep.kind}; steps are "
                                         f"{' or '.join(STEP_KINDS)} deployments")
            args = await self._args(dep, owner)
            described.append((dep, args))
        for n, (step, (dep, args)) in enumerate(zip(steps, described), 1):
            self._check_step(n, step, dep, args, steps[n - 2] if n > 1 else None)
        spec = {"title": title or " → ".join(d.spec.get("item", d.name) for d, _ in described),
                "steps": [s.model_dump(exclude_none=True) | {"kind": d.kind, "item": d.spec.get("item", d.name)}
                          for s, (d, _) in zip(steps, described)]}
        for s, (_, args) in zip(spec["steps"], described):
            if not s.get("input_field") and args is not None:
                s["input_field"] = next((a["name"] for a in args if a["file"]), None)
        dep = deps.create(self.settings.db_url, owner=owner, kind="pipeline", name=spec["title"][:255],
                          spec=spec, backend="pipeline", status="running", vo=vo)
        public = f"{self.settings.public_url}/services/ai4lab/deployments/{dep.id}"
        return deps.set_status(self.settings.db_url, dep.id, "running", "",
                               endpoints={"predict": f"{public}/predict"}) or dep

    async def _args(self, dep: Deployment, owner: str) -> list[dict[str, Any]] | None:
        """The step module's predict arguments (None when it has no local package to read them from)."""
        item: CatalogItem | None = self.items(dep.spec.get("item", dep.name), owner)
        if item is None or not item.run.package_path or not item.run.entry_point:
            return None
        try:
            return await asyncio.to_thread(describe_predict, item, self.settings.envs_dir)
        except (EnvBuildError, RuntimeError, OSError) as e:
            raise InferenceError(500, f"the predict arguments of {item.id} could not be read: {e}") from None

    @staticmethod
    def _check_step(n: int, step: Step, dep: Deployment, args: list[dict[str, Any]] | None,
                    prev: Step | None) -> None:
        if args is None:
            return  # a module known only by its image: the cluster will tell
        by_name = {a["name"]: a for a in args}
        item = dep.spec.get("item", dep.name)
        wants_file = prev is None or prev.output == "file"
        field = step.input_field or next((a["name"] for a in args if a["file"]), None)
        if field is None:
            raise InferenceError(400, f"step {n}: {item} takes no file; say which argument gets the "
                                     f"{'upload' if prev is None else 'previous output'} with input_field")
        if field not in by_name:
            raise InferenceError(400, f"step {n}: {item} has no argument {field!r}; it takes "
                                     f"{', '.join(sorted(by_name))}")
        if prev is not None and by_name[field]["file"] != wants_file:
            what = "a file" if wants_file else "JSON"
            raise InferenceError(400, f"step {n - 1} passes {what} but {item}'s {field!r} is "
                                     f"{'a file argument' if by_name[field]['file'] else 'not a file argument'}")
        if step.output == "file" and "accept" not in by_name:
            raise InferenceError(400, f"step {n}: {item} returns JSON only (it has no 'accept' argument): "
                                     "use output: json")
        unknown = sorted(set(step.fields) - set(by_name))
        if unknown:
            raise InferenceError(400, f"step {n}: {item} has no argument(s) {', '.join(unknown)}")

    # -- run ----------------------------------------------------------------------------
    async def run(self, pipeline: Deployment, upload: Value, fields: dict[str, Any]) -> dict[str, Any]:
        """Run the chain on one input; the report has the final predictions and each step's output and time."""
        steps = [Step.model_validate({k: v for k, v in s.items() if k not in ("kind", "item")})
                 for s in pipeline.spec["steps"]]
        value, report, t_start = upload, [], time.monotonic()
        for n, (step, raw) in enumerate(zip(steps, pipeline.spec["steps"]), 1):
            dep = deps.get(self.settings.db_url, step.deployment)
            if dep is None or dep.owner != pipeline.owner:
                raise InferenceError(404, f"step {n}: deployment {step.deployment} no longer exists")
            if dep.status != "running":
                raise InferenceError(409, f"step {n}: deployment {dep.id} ({raw['item']}) is {dep.status}")
            call_fields = dict(step.fields) | (fields if n == 1 else {})
            files: dict[str, tuple[str, bytes, str]] = {}
            target = step.input_field or raw.get("input_field")
            if value.content is not None:
                if not target:
                    raise InferenceError(400, f"step {n}: {raw['item']} has no argument for a file")
                files[target] = (value.filename, value.content, value.content_type)
            elif target:
                call_fields[target] = value.json if isinstance(value.json, str) else json.dumps(value.json)
            else:
                call_fields |= value.json if isinstance(value.json, dict) else {}
            if step.output == "file":
                call_fields.setdefault("accept", step.accept or "image/png")
            t0 = time.monotonic()
            try:
                value = await (self._call_module(dep, call_fields, files) if dep.kind == "module"
                               else self._call_serverless(dep, call_fields, files))
            except InferenceError as e:
                raise InferenceError(e.status, f"step {n} ({raw['item']}): {e}") from None
            value.filename = f"step{n}.{_ext(value.content_type)}"
            report.append({"step": n, "deployment": dep.id, "kind": dep.kind, "item": raw["item"],
                           "seconds": round(time.monotonic() - t0, 3), "output": value.report()})
        return {"status": "OK", "predictions": value.report(), "steps": report,
                "seconds": round(time.monotonic() - t_start, 3)}

    async def _call_module(self, dep: Deployment, fields: dict[str, Any],
                           files: dict[str, tuple[str, bytes, str]]) -> Value:
        self.modules.touch(dep.id)
        accept = fields.pop("accept", "application/json")  # DEEPaaS reads it from the Accept header
        if dep.spec.get("weights"):
            fields.setdefault("weights", dep.spec["weights"])
        model = dep.endpoints.get("model") or dep.spec["entry_point"]
        url = f"{self.modules.upstream(dep)}{api_prefix(dep.id)}/v2/models/{model}/predict/"
        data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        try:
            resp = await self.http.post(url, data=data, files=files or None, headers={"Accept": accept})
        except httpx.TransportError as e:
            raise InferenceError(502, f"the deployment does not answer: {e}") from None
        ctype = resp.headers.get("content-type", "").split(";")[0]
        if resp.status_code != 200:
            raise InferenceError(400 if 400 <= resp.status_code < 500 else 502, _reason(resp))
        if ctype == "application/json":
            body = resp.json()
            return Value(json=body.get("predictions", body) if isinstance(body, dict) else body)
        return Value(content=resp.content, content_type=ctype or "application/octet-stream")

    async def _call_serverless(self, dep: Deployment, fields: dict[str, Any],
                               files: dict[str, tuple[str, bytes, str]]) -> Value:
        result = await self.serverless.predict(dep, fields, {k: (f[0], f[1]) for k, f in files.items()})
        if result.content is not None:
            return Value(content=result.content, content_type=result.content_type)
        return Value(json=result.json)


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
