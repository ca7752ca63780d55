"""Module, training and CVAT tool deployments on a Nomad cluster (setting ``backend: nomad``).

The job is built from the catalog item's image by the pure builders
(``ai4lab.nomad.render_job``) and sent by ``NomadBackend``; the deployment record
keeps the job's state (``backend_state``) and follows Nomad: a job the scheduler
cannot place stays ``queued`` with Nomad's reason (e.g. "no free 1 GPU(s) of
model ..."), a running allocation is ``running`` with its endpoints, a lost node
or a failed task is ``failed`` with the reason, a training that exits 0 has
``succeeded``.

The CVAT tool (catalog item ``ai4lab-cvat``) is one job rendered by
``ai4lab.nomad.cvat.render_cvat_job`` with an admin password generated per
deployment; the password is kept only in ``backend_state``, sealed with the
state folder's key (``ai4lab.core.secret_box``; never in the deployment dict, never
logged), and opened for the owner by ``cvat_access``. The storage credentials
go to Nomad in the job and are not kept by the platform.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from pydantic import ValidationError

from ai4lab.core import deployments as deps
from ai4lab.backends.nomad import NomadBackend, NomadError
from ai4lab.catalog.model import CatalogItem
from ai4lab.core.db import Deployment
from ai4lab.nomad import NomadJobSpec
from ai4lab.nomad.cvat import render_cvat_job
from ai4lab.nomad.jobs import StorageSpec
from ai4lab.core.secret_box import SecretBox, box_for
from ai4lab.core.settings import GpuDevice, Settings

log = logging.getLogger("ai4lab.deploy.cluster")
CVAT_ITEM = "ai4lab-cvat"


class ClusterError(ValueError):
    """A deployment the cluster refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ClusterDeployments:
    """Module and training deployments as Nomad jobs, their status followed from allocations."""

    def __init__(self, settings: Settings, backend: NomadBackend) -> None:
        self.settings = settings
        self.backend = backend

    def project_of(self, vo: str | None) -> str:
        return vo or self.settings.nomad.default_project

    # -- what the deploy form offers ----------------------------------------------------
    async def offer(self, vo: str | None) -> dict[str, Any]:
        """Datacenters this project may use, with free CPU, memory and GPUs per model (deploy form)."""
        cap = await self.backend.acapacity()
        fed = self.backend.federation
        allowed = {d.name for d in fed.datacenters_for(self.project_of(vo))} if fed else None
        dcs = {name: info for name, info in cap["datacenters"].items() if allowed is None or name in allowed}
        models = (fed.allowance(self.project_of(vo)).gpu_models if fed else None)
        gpus = [GpuDevice(id=f"{dc}-{m}-{i}", model=m) for dc, info in dcs.items() for m, g in info["gpus"].items()
                if models is None or m in models for i in range(g["max_free_on_one_node"])]
        return {"datacenters": dcs, "gpus": gpus}

    # -- start ----------------------------------------------------------------------------
    def job_spec(self, dep: Deployment, item: CatalogItem, hardware: dict[str, Any],
                 command: list[str] | None = None, storage: StorageSpec | None = None) -> NomadJobSpec:
        if not item.run.docker_image:
            raise ClusterError(f"{item.id} has no docker image in its metadata: it cannot run on Nomad")
        dc = hardware.get("datacenter") or ""
        try:
            return NomadJobSpec(
                kind=dep.kind if dep.kind in ("module", "tool") else "training",
                name=dep.id,
                owner=dep.owner,
                project=self.project_of(dep.vo),
                namespace=self.backend.namespace,
                datacenters=[dc] if dc else [],
                image=f"{item.run.docker_image}:{item.run.docker_tag or 'latest'}",
                command=command or [],
                cpu_cores=max(1, int(hardware.get("cpu_num", 1))),
                memory_mb=int(hardware.get("ram", 2000)),
                disk_mb=int(hardware.get("disk", 10000)),
                gpu_count=int(hardware.get("gpu_num", 0)),
                gpu_model=(hardware.get("gpu_type") or None) if hardware.get("gpu_num") else None,
                meta={"title": dep.spec.get("title", "")[:100], "deployment": dep.id, "item": item.id},
                storage=storage,
            )
        except ValueError as e:
            raise ClusterError(str(e)) from None

    async def create(self, owner: str, item: CatalogItem, kind: str, hardware: dict[str, Any], *,
                     title: str = "", vo: str | None = None, args: dict[str, Any] | None = None) -> Deployment:
        """Record the deployment and register its Nomad job; refused jobs leave a failed record and raise."""
        spec = {"item": item.id, "title": title or item.title, "image": item.run.docker_image,
                "entry_point": item.run.entry_point,
                "hardware": hardware, "args": args or {}}
        dep = deps.create(self.settings.db_url, owner=owner, kind=kind, name=item.id, spec=spec, backend="nomad",
                          status="queued", vo=vo)
        command = None
        if kind == "training":
            # the module image's DEEPaaS command line: deepaas-cli train --<arg> <value> ...
            command = ["deepaas-cli", "train", *[x for k, v in (args or {}).items() for x in (f"--{k}", str(v))]]
        try:
            job = self.backend.render(self.job_spec(dep, item, hardware, command))
        except (ClusterError, ValueError) as e:
            deps.set_status(self.settings.db_url, dep.id, "failed", str(e))
            raise ClusterError(str(e)) from None
        try:
            state = await self.backend.submit_job(job)
        except NomadError as e:
            deps.set_status(self.settings.db_url, dep.id, "failed", str(e))
            raise ClusterError(f"Nomad refused the job: {e}", status=502) from None
        return deps.set_status(self.settings.db_url, dep.id, "queued", "submitted to Nomad", backend_state=state)  # type: ignore[return-value]

    async def create_tool(self, owner: str, item: CatalogItem, config: dict[str, Any] | None,
                          hardware: dict[str, Any], *, title: str = "", vo: str | None = None) -> Deployment:
        """A CVAT deployment: the job with a fresh admin password, CVAT's data in the owner's storage."""
        if item.id != CVAT_ITEM:
            raise ClusterError(f"tool {item.id!r} cannot run on the nomad backend; tools on Nomad: {CVAT_ITEM}")
        raw = (config or {}).get("storage")
        if not isinstance(raw, dict):
            raise ClusterError("CVAT keeps its database and data in your remote storage: give config.storage = "
                               '{"type": "webdav" or "s3", "url": ..., "user": ..., "password": ...}')
        try:
            storage = StorageSpec(**raw)
        except ValidationError as e:
            why = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise ClusterError(f"config.storage: {why}") from None
        db = self.settings.db_url
        spec = {"item": item.id, "title": title or item.title, "hardware": hardware,
                "storage": {"type": storage.type, "url": storage.url, "remote_path": storage.remote_path}}
        dep = deps.create(db, owner=owner, kind="tool", name=item.id, spec=spec, backend="nomad",
                          status="queued", vo=vo)
        password = secrets.token_urlsafe(18)
        try:
            job = render_cvat_job(self.job_spec(dep, item, hardware, storage=storage), password,
                                  defaults=self.backend.defaults, federation=self.backend.federation)
        except (ClusterError, ValueError) as e:
            deps.set_status(db, dep.id, "failed", str(e))
            raise ClusterError(str(e)) from None
        try:
            state = await self.backend.submit_job(job)
        except NomadError as e:
            deps.set_status(db, dep.id, "failed", str(e).replace(password, "***"))
            raise ClusterError(f"Nomad refused the job: {str(e).replace(password, '***')}", status=502) from None
        sealed = box_for(self.settings.state).seal(password)
        state |= {"cvat_user": job["Meta"]["cvat_admin_user"], "cvat_password": sealed}
        return deps.set_status(db, dep.id, "queued", "submitted to Nomad", backend_state=state)  # type: ignore[return-value]

    @staticmethod
    def cvat_access(dep: Deployment, box: SecretBox) -> dict[str, Any]:
        """CVAT's address and admin account (the caller checked that ``dep`` is the asker's or they are admin)."""
        return {"url": dep.endpoints.get("ui"), "username": dep.backend_state.get("cvat_user"),
                "password": box.open(dep.backend_state.get("cvat_password")), "status": dep.status}

    # -- follow ---------------------------------------------------------------------------
    async def refresh(self, dep: Deployment) -> None:
        """Bring one record up to date with Nomad."""
        status = await self.backend.status(dep.backend_state)
        db = self.settings.db_url
        if status.running:
            if status.reason.startswith("pending: not placed"):
                new = "queued"
            elif status.reason.startswith("running"):
                new = "running"
            else:
                new = "starting"
            endpoints = dep.endpoints
            if new == "running" and dep.kind in ("module", "tool") and not endpoints:
                endpoints = await self.backend.aendpoints(dep.backend_state)
            if (new, status.reason, endpoints) != (dep.status, dep.status_reason, dep.endpoints):
                deps.set_status(db, dep.id, new, status.reason, endpoints=endpoints)
            return
        if status.reason == "stopped":
            deps.set_status(db, dep.id, "stopped", "stopped")
        elif dep.kind == "training" and status.exit_code == 0 and status.reason == "completed":
            deps.set_status(db, dep.id, "succeeded", "completed")
        else:
            deps.set_status(db, dep.id, "failed", status.reason)

    async def watch_once(self) -> None:
        for dep in deps.list_deployments(self.settings.db_url, active_only=True):
            if dep.backend != "nomad" or dep.kind == "ide" or not dep.backend_state:
                continue
            try:
                await self.refresh(dep)
            except Exception:  # noqa: BLE001 - one unreachable job must not stop the others
                log.exception("refreshing deployment %s from Nomad failed", dep.id)

    async def stop(self, dep: Deployment, reason: str) -> None:
        if dep.backend_state:
            await self.backend.stop(dep.backend_state)
        deps.set_status(self.settings.db_url, dep.id, "stopped", reason)

    async def logs(self, dep: Deployment, tail: int | None = None) -> str:
        return await self.backend.logs(dep.backend_state, tail=tail) if dep.backend_state else ""
