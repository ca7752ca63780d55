"""Which class runs which deployment kind on which backend: the one list to read, and to extend.

Adding a kind, or a backend for a kind, is one new module with a
:class:`~ai4lab.deploy.lifecycle.Lifecycle` subclass (and its request model),
plus one line in :data:`LIFECYCLES`. The API, the launcher's shutdown and the
platform's restart all go through :class:`Registry`.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Union

from pydantic import Field

from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment
from ai4lab.core.errors import PlatformError
from ai4lab.deploy.datasets import DatasetImports
from ai4lab.deploy.lifecycle import DeploymentRequest, Lifecycle, Platform
from ai4lab.deploy.modules import ModuleServers
from ai4lab.deploy.on_nomad import NomadJobs, NomadTools
from ai4lab.deploy.pipelines import Pipelines
from ai4lab.deploy.serverless import OscarServices
from ai4lab.deploy.sessions import LocalSessions, NomadSessions
from ai4lab.deploy.tools import LocalTools
from ai4lab.deploy.trainings import LocalJobs

log = logging.getLogger("ai4lab.deploy")

#: (kinds) on (backend): the class that runs them.
LIFECYCLES: list[type[Lifecycle]] = [
    LocalSessions,  # ide        on local   (through the hub and its spawner)
    NomadSessions,  # ide        on nomad   (the Nomad spawner)
    ModuleServers,  # module     on local   (a DEEPaaS server per deployment)
    LocalJobs,  # training, batch on local (train_runner.py, batch_runner.py; one queue by quota)
    LocalTools,  # tool       on local   (the Flower server)
    NomadJobs,  # module, training, batch on nomad (a job from the module's image)
    NomadTools,  # tool       on nomad   (CVAT)
    OscarServices,  # serverless on oscar   (an OSCAR service per deployment)
    Pipelines,  # pipeline   on pipeline (chains deployments, runs in the platform API)
    DatasetImports,  # dataset  on local   (dataset_runner.py: a download as the owner, by DOI or URL)
]


class Registry:
    """The lifecycles of one platform, found by ``(kind, backend)``."""

    def __init__(self, platform: Platform, lifecycles: list[type[Lifecycle]] | None = None) -> None:
        self.platform = platform
        platform.registry = self
        self.lifecycles: dict[tuple[str, str], Lifecycle] = {}
        self.requests: dict[str, type[DeploymentRequest]] = {}
        for cls in LIFECYCLES if lifecycles is None else lifecycles:
            instance = cls(platform)
            for kind in cls.kinds:
                self.lifecycles[(kind, cls.backend)] = instance
            for model in cls.requests:
                self.requests[model.model_fields["kind"].annotation.__args__[0]] = model  # type: ignore[union-attr]

    @property
    def kinds(self) -> list[str]:
        return list(self.requests)

    def request_model(self) -> Any:
        """The body of ``POST /deployments``: the union of every kind's request, discriminated on ``kind``."""
        models = tuple(self.requests.values())
        if len(models) == 1:
            return models[0]
        return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007 - a runtime tuple of models

    def instances(self) -> list[Lifecycle]:
        return list(dict.fromkeys(self.lifecycles.values()))

    def for_request(self, request: DeploymentRequest) -> Lifecycle:
        backend = request.backend(self.platform)
        found = self.lifecycles.get((request.kind, backend))
        if found is None:
            raise PlatformError(400, f"{request.kind} deployments cannot run on the {backend} backend here")
        if getattr(request, "secrets", None) and not found.takes_secrets:
            raise PlatformError(
                400,
                f"{request.kind} deployments on the {backend} backend cannot be given secrets here: "
                "only the local backend hands them to the process alone",
            )
        return found

    def of(self, dep: Deployment) -> Lifecycle:
        found = self.lifecycles.get((dep.kind, dep.backend))
        if found is None:
            raise PlatformError(500, f"deployment {dep.id}: no lifecycle for {dep.kind} on {dep.backend}")
        return found

    def resumes(self, dep: Deployment) -> bool:
        found = self.lifecycles.get((dep.kind, dep.backend))
        return bool(found and found.resumes_after_restart)

    async def recover(self) -> None:
        """After a restart; the storage of whoever has something active is mounted again first (if remote)."""
        for owner in sorted({d.owner for d in deps.list_deployments(self.platform.settings.db_url, active_only=True)}):
            try:
                await self.platform.storage(owner)
            except PlatformError as e:
                log.warning("the storage of %s is not there for their deployments: %s", owner, e.message)
        for lifecycle in self.instances():
            try:
                await lifecycle.recover()
            except Exception:
                log.exception("recovering %s deployments failed", "/".join(lifecycle.kinds))

    async def watch(self) -> None:
        for lifecycle in self.instances():
            try:
                await lifecycle.watch()
            except Exception:
                log.exception("watching %s deployments failed", "/".join(lifecycle.kinds))


def resumes_after_restart(kind: str, backend: str) -> bool:
    """Whether a deployment a shutdown stops starts again with the platform (for the launcher's sweep)."""
    return any(kind in cls.kinds and cls.backend == backend and cls.resumes_after_restart for cls in LIFECYCLES)
