"""Every kind on a Nomad cluster: modules and trainings (setting ``backend: nomad``), and the CVAT tool.

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
from typing import Any, ClassVar

from pydantic import ValidationError

from ai4lab.backends.nomad import NomadBackend, NomadError
from ai4lab.catalog.deploy_config import deploy_config
from ai4lab.catalog.model import CatalogItem
from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment
from ai4lab.core.errors import PlatformError
from ai4lab.core.secret_box import SecretBox, box_for
from ai4lab.core.settings import GpuDevice
from ai4lab.deploy.lifecycle import Caller, Lifecycle, chosen_hardware
from ai4lab.deploy.modules import ModuleRequest
from ai4lab.deploy.tools import CVAT_ITEM, ToolRequest, tool_item
from ai4lab.deploy.trainings import TrainingRequest
from ai4lab.nomad import NomadJobSpec
from ai4lab.nomad.cvat import render_cvat_job
from ai4lab.nomad.jobs import StorageSpec

log = logging.getLogger("ai4lab.deploy.nomad")
NOMAD_NEEDED = (
    "{what} needs the Nomad backend. Set backend: nomad and nomad.address (AI4LAB_BACKEND=nomad, "
    "AI4LAB_NOMAD__ADDRESS=http://...:4646; see 'Running on a Nomad cluster' in the README)"
)


class NomadJobs(Lifecycle):
    """Module and training deployments as Nomad jobs from the module's image, their status followed from
    allocations. This is where a training starts on Nomad: :meth:`create` renders the job and submits it."""

    kinds: ClassVar[tuple[str, ...]] = ("module", "training")
    backend: ClassVar[str] = "nomad"

    @property
    def cluster(self) -> NomadBackend:
        return self.platform.cluster()

    def project_of(self, vo: str | None) -> str:
        return vo or self.settings.nomad.default_project

    # -- what the deploy form offers ----------------------------------------------------
    async def offer(self, vo: str | None) -> dict[str, Any]:
        """Datacenters this project may use, with free CPU, memory and GPUs per model (deploy form)."""
        cap = await self.cluster.capacity()
        fed = self.cluster.federation
        allowed = {d.name for d in fed.datacenters_for(self.project_of(vo))} if fed else None
        dcs = {name: info for name, info in cap["datacenters"].items() if allowed is None or name in allowed}
        models = fed.allowance(self.project_of(vo)).gpu_models if fed else None
        gpus = [
            GpuDevice(id=f"{dc}-{m}-{i}", model=m)
            for dc, info in dcs.items()
            for m, g in info["gpus"].items()
            if models is None or m in models
            for i in range(g["max_free_on_one_node"])
        ]
        return {"datacenters": dcs, "gpus": gpus}

    # -- start ----------------------------------------------------------------------------
    def job_spec(
        self,
        dep: Deployment,
        item: CatalogItem,
        hardware: dict[str, Any],
        command: list[str] | None = None,
        storage: StorageSpec | None = None,
    ) -> NomadJobSpec:
        if not item.run.docker_image:
            raise PlatformError(400, f"{item.id} has no docker image in its metadata: it cannot run on Nomad")
        dc = hardware.get("datacenter") or ""
        try:
            return NomadJobSpec(
                kind=dep.kind if dep.kind in ("module", "tool") else "training",
                name=dep.id,
                owner=dep.owner,
                project=self.project_of(dep.vo),
                namespace=self.cluster.namespace,
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
            raise PlatformError(400, str(e)) from None

    async def form(self, item: CatalogItem, caller: Caller, purpose: str) -> dict[str, Any]:
        """The item's deploy form on this cluster: its GPUs and the datacenters of the caller's project."""
        offer = await self.offer(caller.vo)
        return deploy_config(
            item,
            quota=self.settings.quotas[caller.role],
            role=caller.role,
            gpus=offer["gpus"],
            purpose=purpose,
            backends=["nomad"],
            datacenters=offer["datacenters"],
            hard=self.settings.resources_hard,
        )

    async def create(self, request: ModuleRequest | TrainingRequest, caller: Caller) -> Deployment:
        """Record the deployment and register its Nomad job; refused jobs leave a failed record and raise."""
        training = isinstance(request, TrainingRequest)
        if isinstance(request, TrainingRequest) and request.workers > 1:
            raise PlatformError(
                400, "trainings with several workers run on the local backend only: on Nomad use workers 1"
            )
        item = self.platform.item("module", request.item, caller, "train" if training else "deploy")
        form = await self.form(item, caller, "training" if training else "inference")
        hardware = chosen_hardware(form, request.hardware.chosen())
        args = request.args if isinstance(request, TrainingRequest) else {}
        spec = {
            "item": item.id,
            "title": request.title or item.title,
            "image": item.run.docker_image,
            "entry_point": item.run.entry_point,
            "hardware": hardware,
            "args": args,
        }
        dep = deps.create(
            self.settings.db_url,
            owner=caller.name,
            kind=request.kind,
            name=item.id,
            spec=spec,
            backend="nomad",
            status="queued",
            vo=caller.vo,
        )
        command = None
        if training:
            # the module image's DEEPaaS command line: deepaas-cli train --<arg> <value> ...
            command = ["deepaas-cli", "train", *[x for k, v in args.items() for x in (f"--{k}", str(v))]]
        try:
            job = self.cluster.render(self.job_spec(dep, item, hardware, command))
        except ValueError as e:
            deps.set_status(self.settings.db_url, dep.id, "failed", str(e))
            raise PlatformError(400, str(e)) from None
        except PlatformError as e:
            deps.set_status(self.settings.db_url, dep.id, "failed", e.message)
            raise
        try:
            state = await self.cluster.submit_job(job)
        except NomadError as e:
            deps.set_status(self.settings.db_url, dep.id, "failed", str(e))
            raise PlatformError(502, f"Nomad refused the job: {e}") from None
        return deps.set_status(
            self.settings.db_url,
            dep.id,
            "queued",
            "submitted to Nomad",  # type: ignore[return-value]
            backend_state=state,
        )

    def api_base(self, dep: Deployment) -> str:
        """Where DEEPaaS in the module's image answers (at its root) what the proxy serves at ``.../api``."""
        return dep.endpoints["api"].rstrip("/")

    @staticmethod
    def cvat_access(dep: Deployment, box: SecretBox) -> dict[str, Any]:
        """CVAT's address and admin account (the caller checked that ``dep`` is the asker's or they are admin)."""
        return {
            "url": dep.endpoints.get("ui"),
            "username": dep.backend_state.get("cvat_user"),
            "password": box.open(dep.backend_state.get("cvat_password")),
            "status": dep.status,
        }

    # -- follow ---------------------------------------------------------------------------
    async def refresh(self, dep: Deployment) -> Deployment:
        """Bring one record up to date with Nomad."""
        status = await self.cluster.status(dep.backend_state)
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
                endpoints = await self.cluster.endpoints(dep.backend_state)
            if (new, status.reason, endpoints) != (dep.status, dep.status_reason, dep.endpoints):
                return deps.set_status(db, dep.id, new, status.reason, endpoints=endpoints) or dep
            return dep
        if status.reason == "stopped":
            return deps.set_status(db, dep.id, "stopped", "stopped") or dep
        if dep.kind == "training" and status.exit_code == 0 and status.reason == "completed":
            return deps.set_status(db, dep.id, "succeeded", "completed") or dep
        return deps.set_status(db, dep.id, "failed", status.reason) or dep

    async def watch(self) -> None:
        for dep in self.mine(active_only=True):
            if not dep.backend_state:
                continue
            try:
                await self.refresh(dep)
            except Exception:
                log.exception("refreshing deployment %s from Nomad failed", dep.id)

    async def stop(self, dep: Deployment, reason: str) -> None:
        if dep.backend_state:
            await self.cluster.stop(dep.backend_state)
        deps.set_status(self.settings.db_url, dep.id, "stopped", reason)

    async def logs(self, dep: Deployment, tail: int | None = None) -> str:
        return await self.cluster.logs(dep.backend_state, tail=tail) if dep.backend_state else ""

    async def recover(self) -> None:
        """Nothing to re-attach: Nomad keeps the jobs, and :meth:`watch` reads their state."""


class NomadTools(NomadJobs):
    """The CVAT tool (``ai4lab-cvat``): one Nomad job of several containers, with an admin password per deployment."""

    kinds: ClassVar[tuple[str, ...]] = ("tool",)

    async def create(self, request: ToolRequest, caller: Caller) -> Deployment:  # type: ignore[override]
        """A CVAT deployment: the job with a fresh admin password, CVAT's data in the owner's storage."""
        item = tool_item(self.platform, request, caller)
        if self.settings.backend != "nomad":
            raise PlatformError(
                400, NOMAD_NEEDED.format(what=f"{CVAT_ITEM} runs containers (database, cache, server, UI): it")
            )
        if item.id != CVAT_ITEM:
            raise PlatformError(400, f"tool {item.id!r} cannot run on the nomad backend; tools on Nomad: {CVAT_ITEM}")
        form = await self.form(item, caller, "inference")
        hardware = chosen_hardware(form, request.hardware.chosen())
        owner, title, vo = caller.name, request.title, caller.vo
        raw = (request.config or {}).get("storage")
        if not isinstance(raw, dict):
            raise PlatformError(
                400,
                "CVAT keeps its database and data in your remote storage: give config.storage = "
                '{"type": "webdav" or "s3", "url": ..., "user": ..., "password": ...}',
            )
        try:
            storage = StorageSpec(**raw)
        except ValidationError as e:
            why = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise PlatformError(400, f"config.storage: {why}") from None
        db = self.settings.db_url
        spec = {
            "item": item.id,
            "title": title or item.title,
            "hardware": hardware,
            "storage": {"type": storage.type, "url": storage.url, "remote_path": storage.remote_path},
        }
        dep = deps.create(
            db, owner=owner, kind="tool", name=item.id, spec=spec, backend="nomad", status="queued", vo=vo
        )
        password = secrets.token_urlsafe(18)
        try:
            job = render_cvat_job(
                self.job_spec(dep, item, hardware, storage=storage),
                password,
                defaults=self.cluster.defaults,
                federation=self.cluster.federation,
            )
        except ValueError as e:
            deps.set_status(db, dep.id, "failed", str(e))
            raise PlatformError(400, str(e)) from None
        except PlatformError as e:
            deps.set_status(db, dep.id, "failed", e.message)
            raise
        try:
            state = await self.cluster.submit_job(job)
        except NomadError as e:
            deps.set_status(db, dep.id, "failed", str(e).replace(password, "***"))
            raise PlatformError(502, f"Nomad refused the job: {str(e).replace(password, '***')}") from None
        sealed = box_for(self.settings.state).seal(password)
        state |= {"cvat_user": job["Meta"]["cvat_admin_user"], "cvat_password": sealed}
        return deps.set_status(db, dep.id, "queued", "submitted to Nomad", backend_state=state)  # type: ignore[return-value]
