"""Pure builders of Nomad jobs (kubespawner ``objects.py`` style): no I/O.

``render_job(spec)`` turns a ``NomadJobSpec`` into the ``Job`` object of Nomad's
HTTP API (JSON, not HCL): what ``POST /v1/jobs`` takes as ``{"Job": ...}``. The
shape follows ai4-papi's templates (``etc/modules/nomad.hcl``): one group
``usergroup`` with a ``main`` task, named ports, services with checks, the
rclone storage sidecar, ``Meta.owner``; built as data and validated instead of
substituted into HCL.

Conventions of Nomad's JSON API used here: field names are the Go struct names
(``MemoryMB``, ``LTarget``), durations are nanoseconds, the driver ``Config``
keeps the HCL names (``image``, ``ports``, ``args``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ai4lab.nomad.config import Federation, NomadDefaults, duration_ns, load_defaults

Kind = Literal["ide", "module", "training", "tool"]
KINDS: tuple[str, ...] = ("ide", "module", "training", "tool")
MAIN_TASK = "main"
STORAGE_TASK = "storage_mount"
GROUP = "usergroup"
GPU_DEVICE = "nvidia/gpu"
MAX_JOB_ID = 48  # leaves room for "-<port label>" in service names (RFC 1123: 63)

_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,14}$")


class StorageSpec(BaseModel):
    """The user's remote storage, mounted by the rclone sidecar (as AI4OS does)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webdav", "s3"]
    url: str = Field(min_length=1, description="WebDAV URL, or S3 endpoint URL")
    user: str = Field(default="", description="WebDAV user, or S3 access key id")
    password: str = Field(default="", description="WebDAV password, or S3 secret key", repr=False)
    vendor: str = Field(default="nextcloud", description="WebDAV vendor (rclone)")
    provider: str = Field(default="Other", description="S3 provider (rclone): AWS, Minio, Ceph, Other")
    region: str = Field(default="", description="S3 region")
    remote_path: str = Field(default="/", description="path on the remote: folder, or bucket/prefix for S3")

    def rclone_env(self) -> dict[str, str]:
        """rclone's environment configuration of the remote ``rshare``."""
        env = {"RCLONE_CONFIG": "/srv/.rclone/rclone.conf", "RCLONE_CONFIG_RSHARE_TYPE": self.type}
        if self.type == "webdav":
            env |= {
                "RCLONE_CONFIG_RSHARE_URL": self.url,
                "RCLONE_CONFIG_RSHARE_VENDOR": self.vendor,
                "RCLONE_CONFIG_RSHARE_USER": self.user,
                "RCLONE_CONFIG_RSHARE_PASS": self.password,
            }
        else:
            env |= {
                "RCLONE_CONFIG_RSHARE_PROVIDER": self.provider,
                "RCLONE_CONFIG_RSHARE_ENDPOINT": self.url,
                "RCLONE_CONFIG_RSHARE_ACCESS_KEY_ID": self.user,
                "RCLONE_CONFIG_RSHARE_SECRET_ACCESS_KEY": self.password,
            }
            if self.region:
                env["RCLONE_CONFIG_RSHARE_REGION"] = self.region
        return env


class NomadJobSpec(BaseModel):
    """What one deployment asks of Nomad; ``render_job`` makes the job from it."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    name: str = Field(min_length=1, description="deployment name or id; part of the job id")
    owner: str = Field(min_length=1, description="user id (OIDC sub); job id prefix and Meta.owner")
    project: str = Field(min_length=1, description="project / VO; Meta.project and federation access")
    namespace: str = "default"
    region: str | None = None
    datacenters: list[str] = Field(default_factory=list, description="asked for; empty: all the project may use")
    node_pool: str | None = None
    preferred_datacenters: list[str] = Field(default_factory=list, description="affinity, e.g. green-energy sites")
    image: str | None = None
    ide: Literal["jupyterlab", "vscode"] = "jupyterlab"
    tool: str | None = Field(default=None, description="name of a tool of the defaults (e.g. flower)")
    command: list[str] = Field(default_factory=list, description="argv; empty: the image's own command")
    env: dict[str, str] = Field(default_factory=dict)
    cpu_cores: int | None = Field(default=None, gt=0, description="dedicated cores (Resources.Cores)")
    cpu_mhz: int | None = Field(default=None, gt=0, description="CPU shares in MHz (Resources.CPU)")
    memory_mb: int = Field(default=2048, gt=0)
    memory_max_mb: int | None = Field(default=None, gt=0, description="memory oversubscription limit")
    disk_mb: int = Field(default=1024, gt=0)
    gpu_count: int = Field(default=0, ge=0)
    gpu_model: str | None = None
    storage: StorageSpec | None = None
    ports: dict[str, int] = Field(default_factory=dict, description="tool: port label -> container port")
    health_path: str | None = Field(default=None, description="tool: HTTP check path of the first port (else TCP)")
    ui: bool = Field(default=False, description="module: add the DEEPaaS Gradio UI sidecar")
    meta: dict[str, str] = Field(default_factory=dict, description="extra job Meta (title, description)")
    priority: int | None = Field(default=None, ge=1, le=100)

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: dict[str, int]) -> dict[str, int]:
        for label, port in v.items():
            if not _LABEL.match(label):
                raise ValueError(f"port label {label!r}: use lowercase letters, digits, '_' (max 15)")
            if not 0 < port < 65536:
                raise ValueError(f"port {label}={port} is not a TCP port")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> NomadJobSpec:
        if self.cpu_cores is not None and self.cpu_mhz is not None:
            raise ValueError("give cpu_cores or cpu_mhz, not both")
        if self.gpu_model is not None and self.gpu_count == 0:
            raise ValueError(f"gpu_model {self.gpu_model!r} given with gpu_count 0")
        if self.memory_max_mb is not None and self.memory_max_mb < self.memory_mb:
            raise ValueError(f"memory_max_mb ({self.memory_max_mb}) is below memory_mb ({self.memory_mb})")
        reserved = {"owner", "project", "kind"} & set(self.meta)
        if reserved:
            raise ValueError(f"meta keys {', '.join(sorted(reserved))} are set by the builder")
        return self


def dns_label(text: str) -> str:
    """Lowercase letters, digits and single dashes; no leading/trailing dash."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "x"


def job_id(spec: NomadJobSpec) -> str:
    """``<owner>-<kind>-<name>``: owner-prefixed, DNS-safe, at most 48 characters.

    Long ids are cut and end with a hash of the full id so that they stay unique.
    """
    full = f"{dns_label(spec.owner)}-{spec.kind}-{dns_label(spec.name)}"
    if len(full) <= MAX_JOB_ID:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: MAX_JOB_ID - 9].rstrip('-')}-{digest}"


def _constraint(attr: str, op: str, value: str) -> dict[str, str]:
    return {"LTarget": attr, "Operand": op, "RTarget": value}


def _one_of(values: list[str]) -> str:
    return "^(" + "|".join(re.escape(v) for v in values) + ")$"


def _placement(spec: NomadJobSpec, federation: Federation | None) -> dict[str, Any]:
    """Region, Datacenters, NodePool and the constraints that keep the job where it may run."""
    if federation is None:
        region = spec.region or "global"
        out: dict[str, Any] = {"Region": region, "Datacenters": spec.datacenters or ["*"], "Constraints": []}
        if spec.node_pool:
            out["NodePool"] = spec.node_pool
        return out
    allowed = federation.datacenters_for(spec.project)
    if not allowed:
        raise ValueError(f"project {spec.project!r} may not use any datacenter of the federation")
    names = [d.name for d in allowed]
    if spec.datacenters:
        denied = [d for d in spec.datacenters if d not in names]
        if denied:
            raise ValueError(
                f"project {spec.project!r} may not use datacenter(s) {', '.join(denied)}; it may use {', '.join(names)}"
            )
        allowed = [d for d in allowed if d.name in spec.datacenters]
    regions = sorted({d.region for d in allowed})
    if spec.region:
        if spec.region not in regions:
            raise ValueError(
                f"project {spec.project!r} has no datacenter in region {spec.region!r} (regions: {', '.join(regions)})"
            )
        allowed = [d for d in allowed if d.region == spec.region]
    elif len(regions) > 1:
        raise ValueError(
            f"the datacenters of project {spec.project!r} are in several regions ({', '.join(regions)}): choose one"
        )
    region = allowed[0].region
    dcs = [d.name for d in allowed]
    pools = sorted({p for d in allowed for p in d.node_pools})
    constraints = [_constraint("${node.datacenter}", "regexp", _one_of(dcs))]
    if spec.node_pool:
        if spec.node_pool not in pools:
            raise ValueError(
                f"project {spec.project!r} may not use node pool {spec.node_pool!r}; it may use {', '.join(pools)}"
            )
        pool = spec.node_pool
    elif len(pools) == 1:
        pool = pools[0]
    else:
        # one job has one pool: "all" (built in) and a constraint to the allowed ones
        pool = "all"
        constraints.append(_constraint("${node.pool}", "regexp", _one_of(pools)))
    return {"Region": region, "Datacenters": dcs, "NodePool": pool, "Constraints": constraints}


def _check_gpus(spec: NomadJobSpec, federation: Federation | None) -> None:
    if federation is None or spec.gpu_count == 0:
        return
    allowance = federation.allowance(spec.project)
    if spec.gpu_count > allowance.max_gpus:
        raise ValueError(
            f"{spec.gpu_count} GPU(s) asked, project {spec.project!r} allows at most {allowance.max_gpus} per job"
        )
    if spec.gpu_model and allowance.gpu_models is not None and spec.gpu_model not in allowance.gpu_models:
        raise ValueError(
            f"GPU model {spec.gpu_model!r} is not offered to project {spec.project!r} "
            f"(offered: {', '.join(allowance.gpu_models) or 'none'})"
        )


def _resources(spec: NomadJobSpec) -> dict[str, Any]:
    res: dict[str, Any] = {"MemoryMB": spec.memory_mb}
    if spec.cpu_mhz is not None:
        res["CPU"] = spec.cpu_mhz
    else:
        res["Cores"] = spec.cpu_cores or 1
    if spec.memory_max_mb is not None:
        res["MemoryMaxMB"] = spec.memory_max_mb
    if spec.gpu_count:
        device: dict[str, Any] = {"Name": GPU_DEVICE, "Count": spec.gpu_count}
        if spec.gpu_model:
            device["Constraints"] = [_constraint("${device.model}", "=", spec.gpu_model)]
        res["Devices"] = [device]
    return res


def _service(job: str, label: str, provider: str, check: dict[str, Any], defaults: NomadDefaults) -> dict[str, Any]:
    check = {
        "Name": f"{label}-alive",
        "Interval": duration_ns(defaults.check.interval),
        "Timeout": duration_ns(defaults.check.timeout),
        **check,
    }
    return {"Name": f"{job}-{label}", "PortLabel": label, "Provider": provider, "Checks": [check]}


def _http_check(path: str) -> dict[str, Any]:
    return {"Type": "http", "Path": path, "Method": "GET"}


def _tcp_check() -> dict[str, Any]:
    return {"Type": "tcp"}


def _storage_tasks(jid: str, storage: StorageSpec, defaults: NomadDefaults) -> list[dict[str, Any]]:
    sd = defaults.storage
    host = f"{sd.host_dir.rstrip('/')}/{jid}"
    tasks = [
        {
            "Name": STORAGE_TASK,
            "Driver": "docker",
            "Lifecycle": {"Hook": "prestart", "Sidecar": True},
            "Config": {
                "image": sd.image,
                "force_pull": True,
                "privileged": True,
                "volumes": [f"{host}:/storage:shared"],
            },
            "Env": {**storage.rclone_env(), "REMOTE_PATH": f"rshare:{storage.remote_path}", "LOCAL_PATH": "/storage"},
            "Resources": {"CPU": sd.cpu_mhz, "MemoryMB": sd.memory_mb},
        }
    ]
    if sd.cleanup:
        tasks.append(
            {
                "Name": "storage_cleanup",
                "Driver": "raw_exec",
                "Lifecycle": {"Hook": "poststop", "Sidecar": False},
                "Config": {"command": "/bin/bash", "args": ["-c", f"sudo umount {host} && sudo rmdir {host}"]},
                "Resources": {"CPU": 50, "MemoryMB": 64},
            }
        )
    return tasks


def _main_task(
    spec: NomadJobSpec, defaults: NomadDefaults, jid: str
) -> tuple[dict[str, Any], dict[str, int], list[dict[str, Any]]]:
    """The main task, its ports (label -> container port) and its services."""
    provider = defaults.service_provider
    env = dict(spec.env)
    command = list(spec.command)
    args_only: list[str] = []  # args for the image's own entrypoint
    image = spec.image
    mount = defaults.training.storage_mount
    ports: dict[str, int] = {}
    services: list[dict[str, Any]] = []
    if spec.kind == "ide":
        ide = defaults.ide.get(spec.ide)
        if ide is None:
            raise ValueError(f"no image configured for IDE {spec.ide!r} (defaults.ide has {', '.join(defaults.ide)})")
        image = image or ide.image
        mount = ide.storage_mount
        port = defaults.ide_port
        ports = {"ide": port}
        env.setdefault("JUPYTERHUB_DEFAULT_URL", ide.default_url)
        command = command or ["jupyterhub-singleuser", "--ip=0.0.0.0", f"--port={port}"]
        prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        services.append(_service(jid, "ide", provider, _http_check(prefix.rstrip("/") + "/api"), defaults))
    elif spec.kind == "module":
        md = defaults.module
        mount = md.storage_mount
        ports = {"api": md.port}
        services.append(_service(jid, "api", provider, _http_check(md.health_path), defaults))
    elif spec.kind == "tool":
        tool = None
        if spec.tool is not None:
            tool = defaults.tools.get(spec.tool)
            if tool is None:
                known = ", ".join(defaults.tools) or "none"
                raise ValueError(f"unknown tool {spec.tool!r} (defaults.tools has {known})")
            image = image or tool.image
            mount = tool.storage_mount
            if not command:
                if tool.command:
                    command = [tool.command, *tool.args]
                else:
                    args_only = list(tool.args)
        ports = dict(spec.ports or (tool.ports if tool else {}))
        if not ports:
            raise ValueError("a tool needs at least one port (ports: {label: container port})")
        health = spec.health_path or (tool.health_path if tool else None)
        for i, label in enumerate(ports):
            check = _http_check(health) if (i == 0 and health) else _tcp_check()
            services.append(_service(jid, label, provider, check, defaults))
    if not image:
        raise ValueError(f"a {spec.kind} job needs an image")
    config: dict[str, Any] = {"image": image, "force_pull": True}
    if args_only:
        config["args"] = args_only
    if command:
        config["command"] = command[0]
        if command[1:]:
            config["args"] = command[1:]
    if ports:
        config["ports"] = list(ports)
    if spec.storage is not None:
        config["volumes"] = [f"{defaults.storage.host_dir.rstrip('/')}/{jid}:{mount}:shared"]
        env.setdefault("AI4LAB_STORAGE", mount)
    task: dict[str, Any] = {"Name": MAIN_TASK, "Driver": "docker", "Config": config, "Resources": _resources(spec)}
    if env:
        task["Env"] = env
    return task, ports, services


def _ui_task(defaults: NomadDefaults) -> dict[str, Any]:
    md = defaults.module
    return {
        "Name": "ui",
        "Driver": "docker",
        "Lifecycle": {"Hook": "poststart", "Sidecar": True},
        "Config": {"image": md.ui_image, "force_pull": True, "ports": ["ui"]},
        "Env": {"DURATION": "10000d", "UI_PORT": str(md.ui_port)},
        "Resources": {"CPU": 500, "MemoryMB": 500},
        "RestartPolicy": {"Attempts": 0, "Mode": "fail", "Interval": duration_ns("30m"), "Delay": duration_ns("15s")},
    }


def render_job(
    spec: NomadJobSpec | Mapping[str, Any],
    *,
    defaults: NomadDefaults | None = None,
    federation: Federation | None = None,
) -> dict[str, Any]:
    """The Nomad ``Job`` (JSON API) running ``spec``; raises ValueError on invalid input.

    ``defaults`` default to ``config/nomad/defaults.yaml``. With a ``federation``
    the job is limited to the datacenters and node pools ``spec.project`` may use,
    and GPUs to its allowance.
    """
    if not isinstance(spec, NomadJobSpec):
        spec = NomadJobSpec.model_validate(dict(spec))
    defaults = defaults or load_defaults()
    _check_gpus(spec, federation)
    placement = _placement(spec, federation)
    jid = job_id(spec)
    jtype: Literal["service", "batch"] = "batch" if spec.kind == "training" else "service"

    main, ports, services = _main_task(spec, defaults, jid)
    tasks: list[dict[str, Any]] = []
    if spec.storage is not None:
        tasks += _storage_tasks(jid, spec.storage, defaults)
    tasks.append(main)
    if spec.kind == "module" and spec.ui:
        ports["ui"] = defaults.module.ui_port
        services.append(_service(jid, "ui", defaults.service_provider, _tcp_check(), defaults))
        tasks.append(_ui_task(defaults))

    group: dict[str, Any] = {
        "Name": GROUP,
        "Count": 1,
        "Tasks": tasks,
        "RestartPolicy": defaults.restart[jtype].to_nomad(),
        "ReschedulePolicy": defaults.reschedule[jtype].to_nomad(),
        "EphemeralDisk": {"SizeMB": spec.disk_mb},
    }
    if ports:
        group["Networks"] = [{"Mode": "host", "DynamicPorts": [{"Label": k, "To": v} for k, v in ports.items()]}]
    if services:
        group["Services"] = services
    if defaults.max_client_disconnect is not None:
        group["MaxClientDisconnect"] = duration_ns(defaults.max_client_disconnect)

    constraints = [c.to_nomad() for c in defaults.constraints] + placement["Constraints"]
    job: dict[str, Any] = {
        "ID": jid,
        "Name": jid,
        "Type": jtype,
        "Namespace": spec.namespace,
        "Region": placement["Region"],
        "Datacenters": placement["Datacenters"],
        "Priority": spec.priority or defaults.priority,
        "Meta": {**spec.meta, "owner": spec.owner, "project": spec.project, "kind": spec.kind},
        "TaskGroups": [group],
    }
    if "NodePool" in placement:
        job["NodePool"] = placement["NodePool"]
    if constraints:
        job["Constraints"] = constraints
    if spec.preferred_datacenters:
        unusable = [dc for dc in spec.preferred_datacenters if federation and dc not in placement["Datacenters"]]
        if unusable:
            raise ValueError(
                f"preferred datacenter(s) {', '.join(unusable)} not among the job's: "
                f"{', '.join(placement['Datacenters'])}"
            )
        weight = defaults.preferred_datacenter_weight
        job["Affinities"] = [
            {"LTarget": "${node.datacenter}", "Operand": "=", "RTarget": dc, "Weight": weight}
            for dc in spec.preferred_datacenters
        ]
    return job


def register_request(job: dict[str, Any]) -> dict[str, Any]:
    """The body of ``POST /v1/jobs`` for a rendered job (``JobRegisterRequest``)."""
    return {"Job": job, "Namespace": job.get("Namespace", "default"), "Region": job.get("Region", "global")}
