"""Operator configuration of the Nomad job builders: defaults and federation.

Both are plain pydantic models loaded from YAML (``config/nomad/defaults.yaml``,
``config/nomad/federation.example.yaml``); unknown keys are errors, and every
error names the file it comes from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_UNITS_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def duration_ns(value: str | int) -> int:
    """A Go duration string ("30s", "1h30m") or a number of nanoseconds, as nanoseconds.

    Nomad's JSON API takes every duration (intervals, delays, timeouts) in nanoseconds.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative duration: {value}")
        return value
    text = str(value).strip()
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (use e.g. '30s', '5m', '1h30m')")
    return int(total)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Duration = str | int


class RestartPolicy(_Strict):
    attempts: int = Field(ge=0)
    interval: Duration
    delay: Duration
    mode: Literal["fail", "delay"] = "fail"

    @field_validator("interval", "delay")
    @classmethod
    def _durations(cls, v: Duration) -> Duration:
        duration_ns(v)
        return v

    def to_nomad(self) -> dict[str, Any]:
        return {
            "Attempts": self.attempts,
            "Interval": duration_ns(self.interval),
            "Delay": duration_ns(self.delay),
            "Mode": self.mode,
        }


class ReschedulePolicy(_Strict):
    attempts: int = Field(ge=0)
    interval: Duration
    delay: Duration
    delay_function: Literal["constant", "exponential", "fibonacci"] = "exponential"
    max_delay: Duration
    unlimited: bool = False

    @field_validator("interval", "delay", "max_delay")
    @classmethod
    def _durations(cls, v: Duration) -> Duration:
        duration_ns(v)
        return v

    def to_nomad(self) -> dict[str, Any]:
        return {
            "Attempts": self.attempts,
            "Interval": duration_ns(self.interval),
            "Delay": duration_ns(self.delay),
            "DelayFunction": self.delay_function,
            "MaxDelay": duration_ns(self.max_delay),
            "Unlimited": self.unlimited,
        }


class CheckDefaults(_Strict):
    interval: Duration = "10s"
    timeout: Duration = "5s"

    @field_validator("interval", "timeout")
    @classmethod
    def _durations(cls, v: Duration) -> Duration:
        duration_ns(v)
        return v


class IdeImage(_Strict):
    image: str
    default_url: str = "/lab"
    storage_mount: str = "/home/jovyan/storage"


class ModuleDefaults(_Strict):
    port: int = 5000
    health_path: str = "/v2/models/"
    storage_mount: str = "/storage"
    ui_image: str
    ui_port: int = 80


class TrainingDefaults(_Strict):
    storage_mount: str = "/storage"


class ToolDefaults(_Strict):
    image: str
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    ports: dict[str, int] = Field(default_factory=dict)
    health_path: str | None = None
    storage_mount: str = "/storage"


class CvatDefaults(_Strict):
    """The CVAT tool: one job with server, database, cache and UI tasks (images of one CVAT release)."""

    server_image: str = "cvat/server:v2.26.2"
    ui_image: str = "cvat/ui:v2.26.2"
    db_image: str = "postgres:15-alpine"
    cache_image: str = "redis:7.2-alpine"
    server_port: int = 8080
    ui_port: int = 80
    admin_user: str = "admin"
    data_dir: str = "cvat"  # folder of the owner's storage holding CVAT's database and data
    memory_mb: int = Field(default=4096, gt=0, description="memory of the server task")


class StorageDefaults(_Strict):
    image: str
    host_dir: str = "/nomad-storage"
    cpu_mhz: int = Field(default=50, gt=0)
    memory_mb: int = Field(default=2000, gt=0)
    cleanup: bool = False


class ConstraintConfig(_Strict):
    attribute: str
    operator: str = "="
    value: str = ""

    def to_nomad(self) -> dict[str, str]:
        return {"LTarget": self.attribute, "Operand": self.operator, "RTarget": self.value}


class NomadDefaults(_Strict):
    """What ``config/nomad/defaults.yaml`` holds: images, sidecar, policies."""

    service_provider: Literal["nomad", "consul"] = "nomad"
    check: CheckDefaults = Field(default_factory=CheckDefaults)
    ide: dict[str, IdeImage]
    ide_port: int = 8888
    module: ModuleDefaults
    training: TrainingDefaults = Field(default_factory=TrainingDefaults)
    tools: dict[str, ToolDefaults] = Field(default_factory=dict)
    cvat: CvatDefaults = Field(default_factory=CvatDefaults)
    storage: StorageDefaults
    restart: dict[Literal["service", "batch"], RestartPolicy]
    reschedule: dict[Literal["service", "batch"], ReschedulePolicy]
    max_client_disconnect: Duration | None = None
    constraints: list[ConstraintConfig] = Field(default_factory=list)
    preferred_datacenter_weight: int = Field(default=50, ge=1, le=100)
    priority: int = Field(default=50, ge=1, le=100)

    @field_validator("restart", "reschedule")
    @classmethod
    def _both_types(cls, v: dict[str, Any]) -> dict[str, Any]:
        missing = {"service", "batch"} - set(v)
        if missing:
            raise ValueError(f"needs an entry for {', '.join(sorted(missing))}")
        return v


class Datacenter(_Strict):
    """One datacenter of the federation, brought by a project and maybe shared."""

    name: str
    region: str = "global"
    node_pools: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    project: str | None = Field(default=None, description="project that brought it (None: platform-wide)")
    shared_with: list[str] = Field(default_factory=list, description='other projects allowed; "*" = all')
    labels: dict[str, str] = Field(default_factory=dict, description="e.g. energy: green")

    def allows(self, project: str) -> bool:
        return self.project is None or project == self.project or "*" in self.shared_with or project in self.shared_with


class ProjectAllowance(_Strict):
    max_gpus: int = Field(default=0, ge=0, description="GPUs one job of the project may ask for")
    gpu_models: list[str] | None = Field(default=None, description="GPU models it may ask for (None: any)")


class Federation(_Strict):
    """Which projects may use which datacenters and node pools."""

    datacenters: list[Datacenter] = Field(min_length=1)
    projects: dict[str, ProjectAllowance] = Field(default_factory=dict)
    default_project: ProjectAllowance = Field(default_factory=ProjectAllowance)

    @field_validator("datacenters")
    @classmethod
    def _unique(cls, v: list[Datacenter]) -> list[Datacenter]:
        names = [d.name for d in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"datacenter(s) listed twice: {', '.join(dup)}")
        return v

    def datacenters_for(self, project: str) -> list[Datacenter]:
        """The datacenters ``project`` may use, in configuration order."""
        return [d for d in self.datacenters if d.allows(project)]

    def allowance(self, project: str) -> ProjectAllowance:
        return self.projects.get(project, self.default_project)


M = TypeVar("M", bound=BaseModel)


def _load(path: Path, model: type[M], what: str) -> M:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Nomad {what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = [f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()]
        raise ValueError(f"{path}: invalid Nomad {what}:\n  " + "\n  ".join(lines)) from None


def default_config_dir() -> Path:
    """``config/nomad``: the job defaults and example files."""
    from ai4lab.core.runtime import shipped

    return shipped("nomad")


def load_defaults(path: Path | str | None = None) -> NomadDefaults:
    """Load the builders' defaults (default: ``config/nomad/defaults.yaml``)."""
    return _load(Path(path) if path else default_config_dir() / "defaults.yaml", NomadDefaults, "defaults")


def load_federation(path: Path | str) -> Federation:
    """Load a federation file (see ``config/nomad/federation.example.yaml``)."""
    return _load(Path(path), Federation, "federation")
