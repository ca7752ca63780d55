"""Inference deployments of modules: a DEEPaaS server per deployment, on the local backend.

The platform API owns these processes: it starts them (building the module's
cached environment first), watches them (a process that dies is marked failed
with the end of its log), stops idle ones, and finds them again after a
restart by pid and start time. Requests reach a server only through the API's
authenticated proxy route, which is also what makes "idle" measurable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
from jupyterhub.utils import random_port

from ai4lab.core import deployments as deps
from ai4lab.backends.base import JobSpec
from ai4lab.backends.local import LocalBackend
from ai4lab.catalog.model import CatalogItem
from ai4lab.deploy import module_env
from ai4lab.deploy.module_code import working_copy
from ai4lab.core.db import Deployment
from ai4lab.core.envs import EnvBuildError, ensure_env, env_bin
from ai4lab.core.settings import Settings

log = logging.getLogger("ai4lab.deploy")
READY_TIMEOUT = 180.0


def api_prefix(dep_id: str) -> str:
    """Where a deployment's DEEPaaS API is served through the hub proxy (its --base-path)."""
    return f"/services/ai4lab/deployments/{dep_id}/api"


class ModuleDeployments:
    def __init__(self, settings: Settings, backend: LocalBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.last_used: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # running deployments by id, so that each proxied request is not a database query
        self._running: dict[str, Deployment] = {}

    def running(self, dep_id: str) -> Deployment | None:
        """The deployment if it is running (from memory; the database when not seen yet)."""
        dep = self._running.get(dep_id)
        if dep is None:
            dep = deps.get(self.settings.db_url, dep_id)
            if dep is not None and dep.status == "running" and dep.kind == "module":
                self._running[dep_id] = dep
        return dep

    def _set_status(self, dep_id: str, status: str, reason: str = "", **fields: Any) -> None:
        if status != "running":
            self._running.pop(dep_id, None)
        deps.set_status(self.settings.db_url, dep_id, status, reason, **fields)

    # -- start ----------------------------------------------------------------------------
    def create(self, owner: str, item: CatalogItem, hardware: dict[str, Any], title: str = "",
               weights: str | None = None, vo: str | None = None, warnings: list[str] | None = None) -> Deployment:
        spec = {
            "item": item.id,
            "title": title or item.title,
            "entry_point": item.run.entry_point,
            "package_path": item.run.package_path,
            "cpu": hardware.get("cpu_num", 1),
            "ram_mb": hardware.get("ram", 2000),
            "gpu": hardware.get("gpu_num", 0),
            "gpu_ids": [],
            "weights": weights,
            "warnings": warnings or [],
        }
        dep = deps.create(self.settings.db_url, owner=owner, kind="module", name=item.id, spec=spec,
                          status="starting", vo=vo)
        self._spawn(dep.id)
        return dep

    async def _start(self, dep_id: str) -> None:
        dep = deps.get(self.settings.db_url, dep_id)
        if dep is None:
            return
        spec = dep.spec
        try:
            self._set_status(dep_id, "starting", "building the module's environment")
            env = await asyncio.to_thread(
                ensure_env, Path(spec["package_path"]), self.settings.envs_dir
            )
            port = random_port()
            workdir = self.backend.user_dir(dep.owner, self.settings.deployments_root / dep_id,
                                            self.settings.deployments_root)
            # deepaas-run starts in the repository, as an AI4OS image's CMD does
            repo = await asyncio.to_thread(working_copy, env, workdir, self.backend.identity(dep.owner))
            job = JobSpec(
                name=f"module-{dep_id}",
                command=[
                    str(env_bin(env, "deepaas-run")), "--listen-ip", "127.0.0.1", "--listen-port", str(port),
                    "--model-name", spec["entry_point"], "--base-path", api_prefix(dep_id),
                    "--client-max-size", str(int(self.settings.max_upload_mb * 2**20)),
                ],
                env=module_env(self.settings, self.backend, dep.owner, env, workdir, repo=repo,
                               app=spec["entry_point"]),
                cwd=repo,
                owner=dep.owner,
                log_path=self.settings.logs_dir / "deployments" / f"{dep_id}.log",
                cpu=spec.get("cpu"),
                ram_gb=(spec.get("ram_mb") or 0) / 1000,
                gpu_ids=spec.get("gpu_ids", []),
            )
            state = await self.backend.submit(job)
            state["port"] = port
            self._set_status(dep_id, "starting", "starting the DEEPaaS server",
                            backend_state=state)
            await self._wait_ready(dep_id, state, port, spec["entry_point"])
        except EnvBuildError as e:
            self._set_status(dep_id, "failed", f"environment build failed: {e}")
        except Exception as e:  # noqa: BLE001 - any failure is the deployment's status, not a crash
            log.exception("deployment %s failed to start", dep_id)
            current = deps.get(self.settings.db_url, dep_id)
            if current is not None and current.status in ("queued", "starting"):
                self._set_status(dep_id, "failed", str(e))

    async def _wait_ready(self, dep_id: str, state: dict[str, Any], port: int, model: str) -> None:
        url = f"http://127.0.0.1:{port}{api_prefix(dep_id)}/v2/models/"
        deadline = time.monotonic() + READY_TIMEOUT
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                status = await self.backend.status(state)
                if not status.running:
                    tail = await self.backend.logs(state, tail=20)
                    self._set_status(dep_id, "failed",
                                    f"DEEPaaS server {status.reason}; last log lines:\n{tail}")
                    return
                try:
                    r = await client.get(url)
                    if r.status_code == 200 and any(m.get("id") == model or m.get("name") == model
                                                    for m in r.json().get("models", [])):
                        base = self.settings.public_url + api_prefix(dep_id)
                        deps.set_status(
                            self.settings.db_url, dep_id, "running", "",
                            endpoints={"api": f"{base}/", "ui": f"{base}/ui",
                                       "swagger": f"{base}/swagger.json",
                                       "predict": f"{self.settings.public_url}/services/ai4lab/deployments/"
                                                  f"{dep_id}/predict",
                                       "model": model},
                        )
                        self.last_used[dep_id] = time.monotonic()
                        return
                except (httpx.TransportError, ValueError):
                    pass
                await asyncio.sleep(0.3)
        await self.backend.stop(state)
        self._set_status(dep_id, "failed", f"not ready within {READY_TIMEOUT:g}s")

    # -- use ------------------------------------------------------------------------------
    def upstream(self, dep: Deployment) -> str:
        return f"http://127.0.0.1:{dep.backend_state['port']}"

    def touch(self, dep_id: str) -> None:
        self.last_used[dep_id] = time.monotonic()

    async def stop(self, dep: Deployment, reason: str) -> None:
        if dep.backend_state:
            await self.backend.stop(dep.backend_state)
        self._set_status(dep.id, "stopped", reason)
        self.last_used.pop(dep.id, None)

    # -- watch ----------------------------------------------------------------------------
    async def watch_once(self) -> None:
        """Mark dead servers failed, stop idle ones."""
        idle = self.settings.deployment_idle_timeout
        now = time.monotonic()
        for dep in deps.list_deployments(self.settings.db_url, kind="module", active_only=True, backend="local"):
            if dep.status != "running" or not dep.backend_state:
                continue
            status = await self.backend.status(dep.backend_state)
            if not status.running:
                tail = await self.backend.logs(dep.backend_state, tail=20)
                self._set_status(dep.id, "failed",
                                f"DEEPaaS server {status.reason}; last log lines:\n{tail}")
                continue
            last = self.last_used.setdefault(dep.id, now)
            if idle > 0 and now - last > idle:
                await self.stop(dep, f"stopped after {idle} s without requests")

    async def recover(self) -> None:
        """After an API restart: forget nothing, re-attach what still runs, restart what a shutdown stopped."""
        for dep in deps.list_deployments(self.settings.db_url, kind="module", backend="local"):
            if dep.status in ("starting", "queued", "running"):
                alive = dep.backend_state and (await self.backend.status(dep.backend_state)).running
                if dep.status == "running" and alive:
                    continue
                if alive:
                    await self.backend.stop(dep.backend_state)
                self._set_status(dep.id, "starting", "restarting after a platform restart")
                self._spawn(dep.id)
            elif dep.status == "stopped" and dep.status_reason == deps.SHUTDOWN_REASON:
                self._set_status(dep.id, "starting", "resuming after a platform restart")
                self._spawn(dep.id)

    def _spawn(self, dep_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._start(dep_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def watch_forever(self, every: float = 5.0) -> None:
        while True:
            try:
                await self.watch_once()
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("watching deployments failed")
            await asyncio.sleep(every)
