"""Serverless deployments (kind ``serverless``): a catalog module as an OSCAR service.

The deployment record holds the service name and how to call it; the service
itself lives on the OSCAR cluster (created on POST, removed on DELETE). A
prediction is one synchronous ``/run`` invocation: nothing runs between
requests, which is the point of serverless inference.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ai4lab.backends.oscar import OscarBackend, OscarConfig, OscarError
from ai4lab.catalog.model import CatalogItem
from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment
from ai4lab.core.envs import EnvBuildError
from ai4lab.core.errors import PlatformError
from ai4lab.core.statuses import RUNNING_STATUSES
from ai4lab.deploy.lifecycle import Caller, DeploymentRequest, Lifecycle, Platform, Value
from ai4lab.deploy.predict_args import describe_predict
from ai4lab.oscar import build_service, encode_request, service_name
from ai4lab.oscar.service import file_argument

NOT_CONFIGURED = (
    "serverless inference needs an OSCAR cluster and none is configured: set oscar_endpoint and "
    "oscar_user + oscar_password (or oscar_token) in ai4lab.yaml, or AI4LAB_OSCAR_ENDPOINT, "
    "AI4LAB_OSCAR_USER, AI4LAB_OSCAR_PASSWORD (AI4LAB_OSCAR_TOKEN), then restart the platform"
)


class ServerlessRequest(DeploymentRequest):
    kind: Literal["serverless"]
    item: str | None = Field(default=None, description="catalog id of the module")
    title: str = Field(default="", description="a title to find the deployment again")

    def backend(self, platform: Platform) -> str:
        return "oscar"


class OscarServices(Lifecycle):
    kinds: ClassVar[tuple[str, ...]] = ("serverless",)
    backend: ClassVar[str] = "oscar"
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = (ServerlessRequest,)

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self._oscar: OscarBackend | None = None

    @property
    def configured(self) -> bool:
        return bool(self.settings.oscar_endpoint)

    def oscar(self) -> OscarBackend:
        if self._oscar is None:
            config = OscarConfig.from_settings(self.settings)
            if config is None:
                raise PlatformError(400, NOT_CONFIGURED)
            try:
                self._oscar = OscarBackend(config)
            except ValueError as e:
                raise PlatformError(400, f"OSCAR is misconfigured: {e}") from None
        return self._oscar

    async def file_arg(self, item: CatalogItem) -> str:
        """The module's file argument, read from its package when it has one (else only JSON invocations)."""
        if not item.run.package_path or not item.run.entry_point:
            return ""
        try:
            return file_argument(await asyncio.to_thread(describe_predict, item, self.settings.envs_dir))
        except (EnvBuildError, RuntimeError, OSError) as e:
            raise PlatformError(500, f"the module's predict arguments could not be read: {e}") from None

    async def create(self, request: ServerlessRequest, caller: Caller) -> Deployment:
        if not self.configured:
            raise PlatformError(400, NOT_CONFIGURED)
        item = self.platform.item("module", request.item, caller, "deploy")
        owner, title, vo = caller.name, request.title, caller.vo
        backend = self.oscar()
        file_arg = await self.file_arg(item)
        dep = deps.create(
            self.settings.db_url,
            owner=owner,
            kind="serverless",
            name=item.id,
            backend="oscar",
            status="starting",
            vo=vo,
            spec={"item": item.id, "title": title or item.title},
        )
        name = service_name(owner, dep.id)
        try:
            service = build_service(
                item,
                name,
                cluster_id=backend.config.cluster_id,
                owner=owner,
                dep_id=dep.id,
                file_arg=file_arg,
                vo=self.settings.oscar_vo,
            )
        except ValueError as e:
            deps.set_status(self.settings.db_url, dep.id, "failed", str(e))
            raise PlatformError(400, str(e)) from None
        spec = {
            **dep.spec,
            "service": name,
            "image": service["image"],
            "file_arg": file_arg,
            "cpu": service["cpu"],
            "memory": service["memory"],
        }
        log_path = self.settings.logs_dir / "deployments" / f"{dep.id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"service": name, "endpoint": backend.config.endpoint, "log_path": str(log_path)}
        try:
            await backend.create_service(service)
        except OscarError as e:
            deps.set_status(self.settings.db_url, dep.id, "failed", str(e), spec=spec, backend_state=state)
            raise PlatformError(e.answer_status, str(e)) from None
        self._log(state, f"created OSCAR service {name} ({service['image']}) on {backend.config.endpoint}")
        public = f"{self.settings.public_url}/services/ai4lab/deployments/{dep.id}"
        return (
            deps.set_status(
                self.settings.db_url,
                dep.id,
                "running",
                "",
                spec=spec,
                backend_state=state,
                endpoints={
                    "predict": f"{public}/predict",
                    "oscar_service": name,
                    "oscar_run": f"{backend.config.endpoint}/run/{name}",
                },
            )
            or dep
        )

    async def refresh(self, dep: Deployment) -> Deployment:
        """Mark a running deployment failed when its service is gone from the cluster."""
        if dep.status != "running" or not self.configured:
            return dep
        try:
            svc = await self.oscar().get_service(dep.backend_state["service"])
        except (OscarError, PlatformError):
            return dep  # the cluster not answering is not the service being gone
        if svc is None:
            return (
                deps.set_status(
                    self.settings.db_url, dep.id, "failed", "the OSCAR service was removed from the cluster"
                )
                or dep
            )
        return dep

    async def stop(self, dep: Deployment, reason: str) -> None:
        name = dep.backend_state.get("service")
        if name and dep.status in RUNNING_STATUSES:
            try:
                await self.oscar().remove_service(name)
            except OscarError as e:
                raise PlatformError(502, f"OSCAR could not remove the service: {e}") from None
            self._log(dep.backend_state, f"removed OSCAR service {name}: {reason}")
        deps.set_status(self.settings.db_url, dep.id, "stopped", reason)

    async def watch(self) -> None:
        """Nothing between requests: a service's presence is checked when its deployment is read (``refresh``)."""

    async def predict(self, dep: Deployment, fields: dict[str, Any], files: dict[str, Value]) -> Value:
        """One synchronous invocation; a refusal of the input raises a 400 with the module's reason."""
        if dep.status != "running":
            raise PlatformError(409, f"deployment {dep.id} is {dep.status}")
        name = dep.backend_state["service"]
        body = encode_request(fields, {k: (v.filename, v.content or b"") for k, v in files.items()})
        t0 = time.monotonic()
        try:
            result = await self.oscar().run(name, body)
        except OscarError as e:
            self._log(dep.backend_state, f"invocation failed: {e}")
            raise PlatformError(404 if e.status == 404 else 502, str(e)) from None
        took = time.monotonic() - t0
        self._log(
            dep.backend_state, f"invocation {'refused: ' + result.error if result.error else 'OK'} in {took:.2f} s"
        )
        if result.error:
            raise PlatformError(400, result.error)
        if result.content is not None:
            return Value(content=result.content, content_type=result.content_type)
        return Value(json={"status": "OK", "predictions": result.json})

    @staticmethod
    def _log(state: dict[str, Any], line: str) -> None:
        path = state.get("log_path")
        if path:
            with open(Path(path), "a") as f:
                f.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + line + "\n")
