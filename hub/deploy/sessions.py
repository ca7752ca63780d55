"""IDE sessions (kind ``ide``) through the platform API: started and stopped by the hub.

The spawner (``ai4lab.spawners``) runs the session and keeps its deployment
record; the API only asks the hub, so that a session started here is the same
as one started from the spawn page (same form checks, same quotas). The hub's
own restart logic and the launcher (``resume_sessions``) bring sessions back
after a platform restart, so there is nothing for the API to recover.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ai4lab.client.hub import HubClient, HubError
from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment
from ai4lab.core.errors import PlatformError
from ai4lab.deploy.lifecycle import Caller, DeploymentRequest, Lifecycle, Platform


class SessionChoice(BaseModel):
    """The spawn form's fields (``ai4lab.spawners.profiles.SessionOptions``); the hub checks the values."""

    model_config = ConfigDict(extra="forbid")

    profile: str | None = Field(default=None, description="slug of a profile of the spawn form")
    ide: str | None = Field(default=None, description="lab or vscode")
    cpu: float | None = Field(default=None, gt=0, description="CPU cores")
    ram_gb: float | None = Field(default=None, gt=0, description="memory in GB")
    gpu: int | None = Field(default=None, ge=0, description="number of GPUs")
    gpu_model: str | None = Field(default=None, description="GPU model ('' any); cluster spawners only")


class SessionRequest(DeploymentRequest):
    kind: Literal["ide"]
    name: str = Field(default="", description="server name ('' is the default server)")
    options: SessionChoice = Field(default_factory=SessionChoice, description="as in the spawn form")

    def backend(self, platform: Platform) -> str:
        return "nomad" if platform.settings.spawner == "nomad" else "local"


class LocalSessions(Lifecycle):
    kinds: ClassVar[tuple[str, ...]] = ("ide",)
    backend: ClassVar[str] = "local"
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = (SessionRequest,)
    resumes_after_restart: ClassVar[bool] = True

    @staticmethod
    def hub() -> HubClient:
        return HubClient()

    async def create(self, request: SessionRequest, caller: Caller) -> Deployment:
        options: dict[str, Any] = request.options.model_dump(exclude_unset=True)
        try:
            await self.hub().start_server(caller.name, request.name, options)
        except HubError as e:
            raise PlatformError(e.status if 400 <= e.status < 500 else 502, str(e)) from None
        name = request.name or "default"
        found = [
            d for d in deps.list_deployments(self.settings.db_url, owner=caller.name, kind="ide") if d.name == name
        ]
        if not found:
            raise PlatformError(502, "the hub accepted the session but no deployment was recorded")
        return found[0]

    async def stop(self, dep: Deployment, reason: str) -> None:
        try:
            await self.hub().stop_server(dep.owner, "" if dep.name == "default" else dep.name)
        except HubError as e:
            if e.status != 404:
                raise PlatformError(502, f"the hub refused to stop the session: {e}") from None
        await super().stop(deps.get(self.settings.db_url, dep.id) or dep, reason)

    async def recover(self) -> None:
        """Nothing: the launcher resumes the sessions a shutdown stopped, through the hub, once it answers."""

    async def watch(self) -> None:
        """Nothing: the spawner follows its sessions (``poll``) and keeps their records."""


class NomadSessions(LocalSessions):
    """Sessions of the Nomad spawner: the same through the hub; their logs come from the Nomad job."""

    backend: ClassVar[str] = "nomad"
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = ()  # the same request as LocalSessions

    async def logs(self, dep: Deployment, tail: int | None = None) -> str:
        return await self.platform.cluster().logs(dep.backend_state, tail=tail) if dep.backend_state else ""
