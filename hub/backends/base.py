"""What the job backends share: the state of a job is a JSON-able dict, and three calls read or end it.

A backend starts a job from its own kind of description (the local backend a
:class:`JobSpec` of a command; Nomad a rendered job of a container image) and
returns a ``state`` dict, which the caller stores (deployment row or spawner
state); that is all it needs to find the job again after a restart. The
lifecycles (``ai4lab.deploy``) and the spawners then only ``status``, ``logs``
and ``stop`` it. OSCAR services are no jobs: ``ai4lab.backends.oscar`` has its own calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class JobSpec:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    log_path: Path | None = None
    cpu: float | None = None
    ram_gb: float | None = None
    gpu_ids: list[str] = field(default_factory=list)
    #: Platform account whose code this is: the local backend runs the job as its system user.
    owner: str | None = None
    #: Folders the platform prepared for the job (work folder, outputs): handed to the owner before it starts.
    owned_paths: list[Path] = field(default_factory=list)
    #: The owner's secrets it was given, by name (kept out of ``repr``: a spec in a log must not show them).
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    #: ``env``: as environment variables of those names; ``files``: as files in ``$AI4LAB_SECRETS_DIR``.
    secrets_as: str = "env"
    #: The signal that asks the job to stop before it is killed (as Docker's STOPSIGNAL): DEEPaaS's
    #: server ends on SIGINT and ignores SIGTERM, so module servers are stopped with SIGINT.
    stop_signal: int = 15


@dataclass
class JobStatus:
    running: bool
    exit_code: int | None = None
    reason: str = ""


class JobBackend(Protocol):
    """Where jobs run (``LocalBackend``, ``NomadBackend``): what their users call once a job is started."""

    name: str

    async def status(self, state: dict[str, Any]) -> JobStatus: ...

    async def logs(self, state: dict[str, Any], tail: int | None = None) -> str: ...

    async def stop(self, state: dict[str, Any], timeout: float = 10) -> None: ...
