"""The lifecycle every deployment kind implements on every backend.

A deployment kind on a backend (``("training", "nomad")``) is one class that
subclasses :class:`Lifecycle` and names the request body it takes. The API
knows nothing of the kinds: ``POST /deployments`` validates the body against
the union of the registered request models (discriminated on ``kind``), asks
the registry (``ai4lab.deploy.registry``) which lifecycle serves it, and calls
``create``; every later call finds the lifecycle from the deployment's own
``(kind, backend)``. This is JupyterHub's ``Spawner`` shape: one small
contract, implementations registered by name, a dispatcher that knows none
of them.

The contract, as JupyterHub's spawners have it:

``create``   validate the request, record the deployment, start it (or queue it);
``start``    make it run (also what ``recover`` calls for a deployment to resume);
``refresh``  bring one record up to date with its backend;
``logs``     its log text;
``stop``     end it, with the reason shown to its owner;
``recover``  after a platform restart: re-attach what runs, read back what ended;
``watch``    called every second: follow the active deployments of this lifecycle.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ai4lab.catalog.deploy_config import check_choice, deploy_config
from ai4lab.catalog.registry import Viewer
from ai4lab.core import accounts, user_secrets
from ai4lab.core import deployments as deps
from ai4lab.core.db import ACTIVE_STATUSES, Deployment
from ai4lab.core.errors import PlatformError

if TYPE_CHECKING:
    from ai4lab.backends.base import JobSpec
    from ai4lab.backends.local import LocalBackend
    from ai4lab.backends.nomad import NomadBackend
    from ai4lab.catalog import Catalog
    from ai4lab.catalog.model import CatalogItem, Kind
    from ai4lab.core.settings import Settings


#: Largest file answer echoed back (base64) in a report (a pipeline's per-step outputs).
ECHO_BYTES = 64 * 1024


@dataclass(frozen=True)
class Caller:
    """Who asks, with their platform account (role and VO decide quotas and what they see)."""

    name: str
    admin: bool = False
    role: str = "basic"
    vo: str | None = None

    @classmethod
    def of(cls, settings: Settings, name: str, admin: bool = False) -> Caller:
        acc = accounts.get_user(settings.db_url, name) or accounts.ensure_user(settings.db_url, name, admin=admin)
        return cls(name=name, admin=admin, role=acc.role, vo=acc.vo)

    def viewer(self) -> Viewer:
        return Viewer(name=self.name, vo=self.vo, admin=self.admin)


class Hardware(BaseModel):
    """What a deploy form lets the user choose (``GET /catalog/{kind}/{id}/config``); unset keys take its defaults."""

    model_config = ConfigDict(extra="forbid")

    cpu_num: int | None = Field(default=None, ge=1, description="CPU cores")
    gpu_num: int | None = Field(default=None, ge=0, description="GPUs")
    gpu_type: str | None = Field(default=None, description="GPU model (cluster backends)")
    ram: int | None = Field(default=None, ge=1, description="memory in MB")
    disk: int | None = Field(default=None, ge=1, description="disk in MB")
    datacenter: str | None = Field(default=None, description="datacenter (Nomad federation)")

    def chosen(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class DeploymentRequest(BaseModel):
    """What every ``POST /deployments`` body has; each kind's model adds its fields and a ``kind`` literal."""

    model_config = ConfigDict(extra="forbid")

    kind: str

    def backend(self, platform: Platform) -> str:
        """Where a new deployment of this request runs (the registry's second key)."""
        return "local"


class ItemRequest(DeploymentRequest):
    """A deployment of a catalog item: which one, with what title and resources (on the settings' backend)."""

    item: str = Field(min_length=1, description="catalog id of the module or tool")
    title: str = Field(default="", description="a title to find the deployment again")
    hardware: Hardware = Field(default_factory=Hardware, description="within the item's deploy form")
    secrets: list[str] = Field(
        default_factory=list,
        max_length=100,
        description='names of your secrets (GET /secrets) that the deployment gets, e.g. ["HF_TOKEN"]',
    )
    secrets_as: Literal["env", "files"] = Field(
        default="env",
        description="env: environment variables of the secrets' names; "
        "files: one file per secret (mode 0600) in the folder $AI4LAB_SECRETS_DIR",
    )

    def backend(self, platform: Platform) -> str:
        return platform.settings.backend


def resources(hardware: dict[str, Any], ram_mb: int = 2000) -> dict[str, Any]:
    """What a deployment's record keeps of the resources it was given (``spec``); GPUs are handed out later."""
    return {
        "cpu": hardware.get("cpu_num", 1),
        "ram_mb": hardware.get("ram", ram_mb),
        "gpu": int(hardware.get("gpu_num", 0) or 0),
        "gpu_ids": [],
    }


@dataclass
class Platform:
    """What the lifecycles share in one API process: settings, catalog, backends, and the job queue's lock."""

    settings: Settings
    catalog: Catalog
    local: LocalBackend
    nomad: NomadBackend | None = None
    #: The registry these lifecycles belong to (set by it): a pipeline finds its steps' lifecycles there.
    registry: Any = None
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @classmethod
    def for_settings(cls, settings: Settings, local: LocalBackend | None = None) -> Platform:
        from ai4lab.backends.local import LocalBackend
        from ai4lab.catalog import Catalog

        return cls(settings=settings, catalog=Catalog.for_settings(settings), local=local or LocalBackend())

    def lock(self, name: str) -> asyncio.Lock:
        return self.locks.setdefault(name, asyncio.Lock())

    async def storage(self, user: str) -> Path:
        """The user's storage folder, with their S3 or WebDAV storage mounted there first when it is remote."""
        from ai4lab.core.mounts import ensure_mount

        return await asyncio.to_thread(ensure_mount, self.settings, user, self.local.identity(user))

    def cluster(self) -> NomadBackend:
        """The Nomad cluster of the settings (made on first use: it holds no connection)."""
        if self.nomad is None:
            from ai4lab.backends.nomad import NomadBackend

            self.nomad = NomadBackend.from_settings(self.settings.nomad)
        return self.nomad

    def item(self, kind: Kind, item_id: str | None, caller: Caller, verb: str) -> CatalogItem:
        """The catalog item a request names: 400 without one, 404 when it is missing or not visible to the caller."""
        if not item_id:
            raise PlatformError(400, f"say which {kind} to {verb}: item=<catalog id>")
        item = self.catalog.get(kind, item_id, caller.viewer())
        if item is None:
            raise PlatformError(404, f"no {kind} {item_id!r} in the catalog")
        return item

    def form(self, item: CatalogItem, caller: Caller, purpose: str = "inference") -> dict[str, Any]:
        """The item's deploy form for this caller on this machine (quota of their role, local GPUs)."""
        return deploy_config(
            item,
            quota=self.settings.quotas[caller.role],
            role=caller.role,
            gpus=self.settings.gpus,
            purpose=purpose,
            hard=self.settings.resources_hard,
        )


def chosen_hardware(form: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """The form's values overridden by the user's choice; 400 with the reasons when it does not fit."""
    if not form["deployable"]:
        raise PlatformError(400, "cannot deploy: " + "; ".join(form["problems"]))
    problems = check_choice(form, chosen)
    if problems:
        raise PlatformError(400, "hardware: " + "; ".join(problems))
    return {k: f["value"] for k, f in form["hardware"].items()} | chosen


def cpu_only(form: dict[str, Any], hardware: dict[str, Any], asked: dict[str, Any], what: str) -> list[str]:
    """The form's warnings for a deployment that runs without GPUs on this backend; 400 if GPUs were asked.

    Why: the form's default GPU count is what the metadata recommends; a
    deployment kind that cannot have GPUs here still runs, on CPU, and says so.
    """
    if asked.get("gpu_num"):
        raise PlatformError(400, f"GPUs for {what} on the local backend are not offered yet: ask for gpu_num 0")
    warnings = list(form["warnings"])
    recommended = hardware.get("gpu_num") or 0
    hardware["gpu_num"] = 0
    if recommended and not any("GPU" in w for w in warnings):
        warnings.append(
            f"this {form['item']['kind']} recommends {recommended} GPU{'s' if recommended > 1 else ''}; "
            f"it will run on CPU and may be slow ({what} get no GPU on this backend yet)"
        )
    return warnings


@dataclass
class Value:
    """A prediction's answer, JSON or a file; also what flows between a pipeline's steps."""

    json: Any = None
    content: bytes | None = None
    content_type: str = "application/json"
    filename: str = "input"

    def report(self) -> Any:
        """JSON as it is; a file as its type and size, with its bytes (base64) when small."""
        if self.content is None:
            return self.json
        out: dict[str, Any] = {"content_type": self.content_type, "bytes": len(self.content)}
        if len(self.content) <= ECHO_BYTES:
            out["base64"] = base64.b64encode(self.content).decode()
        return out


class Lifecycle:
    """One deployment kind on one backend. Subclasses set the class variables and override what they do."""

    #: The kinds this class serves (a backend's class may serve several, e.g. every kind on Nomad).
    kinds: ClassVar[tuple[str, ...]] = ()
    #: The ``backend`` value of the deployment records it makes.
    backend: ClassVar[str] = "local"
    #: The body of ``POST /deployments`` for each kind it serves (``kind`` literal first).
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = ()
    #: Whether a deployment that a platform shutdown stopped starts again at the next start (sessions,
    #: servers), or ends there (a job cannot resume where it was).
    resumes_after_restart: ClassVar[bool] = False
    #: Whether its deployments can be given their owner's secrets (``ItemRequest.secrets``): only where the
    #: values reach the process and nothing else (the local backend's environment or private files).
    takes_secrets: ClassVar[bool] = False

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the contract -----------------------------------------------------------------------
    async def create(self, request: Any, caller: Caller) -> Deployment:
        raise PlatformError(400, f"{request.kind} deployments cannot be created on the {self.backend} backend")

    async def start(self, dep: Deployment) -> None:
        """Make a recorded deployment run. Default: nothing to do (the backend started it on create)."""

    async def refresh(self, dep: Deployment) -> Deployment:
        return dep

    async def logs(self, dep: Deployment, tail: int | None = None) -> str:
        return await self.platform.local.logs(dep.backend_state, tail=tail) if dep.backend_state else ""

    async def progress(self, dep: Deployment) -> dict[str, int] | None:
        """How far a job is (``{"done": n, "total": m}``), for kinds that can tell."""
        return None

    async def stop(self, dep: Deployment, reason: str) -> None:
        if dep.status in ACTIVE_STATUSES:
            deps.set_status(self.settings.db_url, dep.id, "stopped", reason)

    async def recover(self) -> None:
        """After a platform restart. Default: resume what a shutdown stopped, if this kind resumes."""
        if not self.resumes_after_restart:
            return
        for dep in self.mine():
            if dep.status == "stopped" and dep.status_reason == deps.SHUTDOWN_REASON:
                deps.set_status(self.settings.db_url, dep.id, "starting", "resuming after a platform restart")
                self.spawn(self.start(dep))

    async def watch(self) -> None:
        """Follow the active deployments of this lifecycle. Default: refresh each."""
        for dep in self.mine(active_only=True):
            await self.refresh(dep)

    # -- shared helpers -----------------------------------------------------------------------
    def record(
        self,
        caller: Caller,
        kind: str,
        item: CatalogItem,
        spec: dict[str, Any],
        status: str,
        request: ItemRequest | None = None,
    ) -> Deployment:
        """The deployment's record, made the moment the request is accepted (so that it can be followed).

        The secrets a ``request`` names are checked here (400 for one the caller does not have) and
        recorded by name only, with how they are given; their values are read when it starts.
        """
        if request is not None and request.secrets:
            names = user_secrets.check_names(self.settings.db_url, caller.name, request.secrets)
            spec = {**spec, "secrets": names, "secrets_as": request.secrets_as}
        return deps.create(
            self.settings.db_url,
            owner=caller.name,
            kind=kind,
            name=item.id,
            spec=spec,
            backend=self.backend,
            status=status,
            vo=caller.vo,
        )

    def with_secrets(self, job: JobSpec, dep: Deployment) -> JobSpec:
        """``job`` given the secrets its deployment names, read now (409 for one deleted since it was asked)."""
        job.secrets = user_secrets.values(
            self.settings.db_url, self.settings.state, dep.owner, list(dep.spec.get("secrets") or [])
        )
        job.secrets_as = dep.spec.get("secrets_as", "env")
        return job

    def mine(self, active_only: bool = False) -> list[Deployment]:
        """This lifecycle's deployment records (its kinds on its backend), newest first."""
        return [
            d
            for kind in self.kinds
            for d in deps.list_deployments(
                self.settings.db_url, kind=kind, active_only=active_only, backend=self.backend
            )
        ]

    async def predict(self, dep: Deployment, fields: dict[str, Any], files: dict[str, Value]) -> Value:
        """One prediction (kinds that take them besides modules, whose own API is proxied instead)."""
        raise PlatformError(400, f"deployment {dep.id} is a {dep.kind}: it takes no predictions")

    def touch(self, dep_id: str) -> None:
        """A request reached the deployment (kinds with an idle timeout count from here)."""

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background, kept referenced until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
