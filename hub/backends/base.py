"""The backend contract shared by the local, Nomad and OSCAR implementations.

A backend turns a ``JobSpec`` into something running and reports on it. All it
needs to find the job again after a restart is the JSON-able ``state`` dict
returned by ``submit``, which the caller stores (deployment row or spawner state).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


@dataclass
class JobStatus:
    running: bool
    exit_code: int | None = None
    reason: str = ""


class Backend(ABC):
    name: str = "abstract"

    @abstractmethod
    async def submit(self, spec: JobSpec) -> dict[str, Any]:
        """Start the job; return the state needed to find it again."""

    @abstractmethod
    async def status(self, state: dict[str, Any]) -> JobStatus: ...

    @abstractmethod
    async def logs(self, state: dict[str, Any], tail: int | None = None) -> str: ...

    @abstractmethod
    async def stop(self, state: dict[str, Any], timeout: float = 10) -> None: ...

    def endpoints(self, state: dict[str, Any]) -> dict[str, str]:
        return dict(state.get("endpoints", {}))

    def capacity(self) -> dict[str, Any]:
        return {}
