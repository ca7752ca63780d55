"""Inference deployments of modules (kind ``module``) on the local backend: a DEEPaaS server each.

The platform API owns these processes: it starts them (building the module's
cached environment first), watches them (a process that dies is marked failed
with the end of its log), stops idle ones, and finds them again after a
restart by pid and start time. Requests reach a server only through the API's
authenticated proxy route, which is also what makes "idle" measurable.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from jupyterhub.utils import random_port
from pydantic import Field

from ai4lab.backends.base import JobSpec
from ai4lab.core import deployments as deps
from ai4lab.core.db import ACTIVE_STATUSES, Deployment
from ai4lab.core.envs import EnvBuildError, ensure_env, env_bin
from ai4lab.core.errors import PlatformError
from ai4lab.core.statuses import STARTING_STATUSES
from ai4lab.core.storage import in_user_storage
from ai4lab.deploy import module_env
from ai4lab.deploy.lifecycle import (
    Caller,
    DeploymentRequest,
    ItemRequest,
    Lifecycle,
    Platform,
    chosen_hardware,
    cpu_only,
    resources,
)
from ai4lab.deploy.module_code import working_copy
from ai4lab.deploy.trainings import model_file

log = logging.getLogger("ai4lab.deploy")
READY_TIMEOUT = 180.0


def api_prefix(dep_id: str) -> str:
    """Where a deployment's DEEPaaS API is served through the hub proxy (its --base-path)."""
    return f"/services/ai4lab/deployments/{dep_id}/api"


class ModuleRequest(ItemRequest):
    kind: Literal["module"]
    weights: str | None = Field(
        default=None, description="weights to predict with: a file in your storage or a training id"
    )


class ModuleServers(Lifecycle):
    kinds: ClassVar[tuple[str, ...]] = ("module",)
    backend: ClassVar[str] = "local"
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = (ModuleRequest,)
    resumes_after_restart: ClassVar[bool] = True
    takes_secrets: ClassVar[bool] = True

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.local = platform.local
        self.last_used: dict[str, float] = {}

    # -- create -----------------------------------------------------------------------------
    async def create(self, request: ModuleRequest, caller: Caller) -> Deployment:
        item = self.platform.item("module", request.item, caller, "deploy")
        if not item.run.package_path or not item.run.entry_point:
            raise PlatformError(
                400,
                f"{item.id} has no local package with a deepaas.v2.model entry point: "
                "it can only run from its image on a cluster backend",
            )
        form = self.platform.form(item, caller)
        asked = request.hardware.chosen()
        hardware = chosen_hardware(form, asked)
        warnings = cpu_only(form, hardware, asked, "module deployments")
        weights = None
        if request.weights and "/" not in request.weights and "." not in request.weights:
            weights = str(model_file(self.settings, caller.name, request.weights))
        elif request.weights:
            path = in_user_storage(self.settings.user_storage(caller.name), request.weights, "weights")
            if not path.is_file():
                raise PlatformError(400, f"no weights file {request.weights!r} in your storage")
            weights = str(path)
        spec = {
            "item": item.id,
            "title": request.title or item.title,
            "entry_point": item.run.entry_point,
            "package_path": item.run.package_path,
            **resources(hardware),
            "weights": weights,
            "warnings": warnings,
        }
        dep = self.record(caller, "module", item, spec, "starting", request)
        self.spawn(self.start(dep))
        return dep

    # -- start ------------------------------------------------------------------------------
    async def start(self, dep: Deployment) -> None:
        dep_id = dep.id
        spec = dep.spec
        try:
            deps.set_status(self.settings.db_url, dep_id, "starting", "building the module's environment")
            env = await asyncio.to_thread(ensure_env, Path(spec["package_path"]), self.settings.envs_dir)
            port = random_port()
            workdir = self.local.user_dir(
                dep.owner, self.settings.deployments_root / dep_id, self.settings.deployments_root
            )
            # deepaas-run starts in the repository, as an AI4OS image's CMD does
            repo = await asyncio.to_thread(working_copy, env, workdir, self.local.identity(dep.owner))
            job = JobSpec(
                name=f"module-{dep_id}",
                command=[
                    str(env_bin(env, "deepaas-run")),
                    "--listen-ip",
                    "127.0.0.1",
                    "--listen-port",
                    str(port),
                    "--model-name",
                    spec["entry_point"],
                    "--base-path",
                    api_prefix(dep_id),
                    "--client-max-size",
                    str(int(self.settings.max_upload_mb * 2**20)),
                ],
                env=module_env(self.settings, self.local, dep.owner, env, workdir, repo=repo, app=spec["entry_point"]),
                cwd=repo,
                owner=dep.owner,
                stop_signal=signal.SIGINT,  # deepaas-run ignores SIGTERM: it would wait out the stop timeout
                log_path=self.settings.logs_dir / "deployments" / f"{dep_id}.log",
                cpu=spec.get("cpu"),
                ram_gb=(spec.get("ram_mb") or 0) / 1000,
                gpu_ids=spec.get("gpu_ids", []),
            )
            state = await self.local.submit(self.with_secrets(job, dep))
            state["port"] = port
            deps.set_status(
                self.settings.db_url, dep_id, "starting", "starting the DEEPaaS server", backend_state=state
            )
            await self._wait_ready(dep_id, state, port, spec["entry_point"])
        except EnvBuildError as e:
            deps.set_status(self.settings.db_url, dep_id, "failed", f"environment build failed: {e}")
        except Exception as e:
            log.exception("deployment %s failed to start", dep_id)
            current = deps.get(self.settings.db_url, dep_id)
            if current is not None and current.status in STARTING_STATUSES:
                deps.set_status(self.settings.db_url, dep_id, "failed", str(e))

    async def _wait_ready(self, dep_id: str, state: dict[str, Any], port: int, model: str) -> None:
        url = f"http://127.0.0.1:{port}{api_prefix(dep_id)}/v2/models/"
        deadline = time.monotonic() + READY_TIMEOUT
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                status = await self.local.status(state)
                if not status.running:
                    tail = await self.local.logs(state, tail=20)
                    deps.set_status(
                        self.settings.db_url,
                        dep_id,
                        "failed",
                        f"DEEPaaS server {status.reason}; last log lines:\n{tail}",
                    )
                    return
                try:
                    r = await client.get(url)
                    if r.status_code == 200 and any(
                        m.get("id") == model or m.get("name") == model for m in r.json().get("models", [])
                    ):
                        base = self.settings.public_url + api_prefix(dep_id)
                        deps.set_status(
                            self.settings.db_url,
                            dep_id,
                            "running",
                            "",
                            endpoints={
                                "api": f"{base}/",
                                "ui": f"{base}/ui",
                                "swagger": f"{base}/swagger.json",
                                "predict": f"{self.settings.public_url}/services/ai4lab/deployments/{dep_id}/predict",
                                "model": model,
                            },
                        )
                        self.last_used[dep_id] = time.monotonic()
                        return
                except (httpx.TransportError, ValueError):
                    pass
                await asyncio.sleep(0.3)
        await self.local.stop(state)
        deps.set_status(self.settings.db_url, dep_id, "failed", f"not ready within {READY_TIMEOUT:g}s")

    # -- use ------------------------------------------------------------------------------
    def api_base(self, dep: Deployment) -> str:
        """Where the DEEPaaS server answers what the proxy serves at ``/deployments/<id>/api``."""
        return f"http://127.0.0.1:{dep.backend_state['port']}{api_prefix(dep.id)}"

    def touch(self, dep_id: str) -> None:
        self.last_used[dep_id] = time.monotonic()

    async def stop(self, dep: Deployment, reason: str) -> None:
        if dep.backend_state:
            await self.local.stop(dep.backend_state)
        await super().stop(dep, reason)
        self.last_used.pop(dep.id, None)

    # -- watch ------------------------------------------------------------------------------
    async def watch(self) -> None:
        """Mark dead servers failed, stop idle ones."""
        idle = self.settings.deployment_idle_timeout
        now = time.monotonic()
        for dep in self.mine(active_only=True):
            if dep.status != "running" or not dep.backend_state:
                continue
            status = await self.local.status(dep.backend_state)
            if not status.running:
                tail = await self.local.logs(dep.backend_state, tail=20)
                deps.set_status(
                    self.settings.db_url, dep.id, "failed", f"DEEPaaS server {status.reason}; last log lines:\n{tail}"
                )
                continue
            last = self.last_used.setdefault(dep.id, now)
            if idle > 0 and now - last > idle:
                await self.stop(dep, f"stopped after {idle} s without requests")

    async def recover(self) -> None:
        """After an API restart: re-attach what still runs, restart what was starting or what a shutdown stopped.

        A server caught starting is ended first, also one launched but not recorded yet (found by its job name):
        otherwise the deployment would run two.
        """
        for dep in self.mine():
            if dep.status in ACTIVE_STATUSES:
                alive = dep.backend_state and (await self.local.status(dep.backend_state)).running
                if dep.status == "running" and alive:
                    continue
                if alive:
                    await self.local.stop(dep.backend_state)
                await self.local.stop_job(f"module-{dep.id}")
                deps.set_status(self.settings.db_url, dep.id, "starting", "restarting after a platform restart")
                self.spawn(self.start(dep))
        await super().recover()
