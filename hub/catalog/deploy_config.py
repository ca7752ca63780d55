"""The deploy form of a catalog item, in the shape of ai4-papi's ``user.yaml``.

Each field has ``name``, ``value`` and ``description`` and, where it applies,
``range`` or ``options``. As in AI4OS, the resources an item's metadata
declares are defaults, not requirements: ``cpu`` and ``memory_MB`` give the
default values, clamped to what the user's quota allows; a GPU asked for where
none can be given becomes a warning ("this module recommends 1 GPU; it will
run on CPU and may be slow") and the deployment goes on. Ranges are never
empty. Only when the operator says so (``resources_hard``) are the declared
resources minimums: then ranges start at them and an item that does not fit
is not deployable, with the reasons in ``problems``.
"""

from __future__ import annotations

from typing import Any

from ai4lab.catalog.model import CatalogItem, Resources
from ai4lab.core.settings import GpuDevice, Quota

DEFAULT_CPU = 1
DEFAULT_RAM_MB = 2000
MIN_RAM_MB = 500
DEFAULT_DISK_MB = 10000
MIN_DISK_MB = 1000
MAX_DISK_MB = 50000


def _ranged(name: str, value: float, low: float, high: float, description: str = "") -> dict[str, Any]:
    field: dict[str, Any] = {
        "name": name,
        "value": min(max(value, low), high) if low <= high else low,
        "range": [low, high],
    }
    if description:
        field["description"] = description
    return field


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}{'' if n == 1 else 's'}"


def _shortfalls(
    item: CatalogItem, need: Resources, *, quota: Quota, role: str, gpus: list[GpuDevice], hard: bool
) -> list[str]:
    """What the item declares and this user cannot have here, said as warnings or (``hard``) as problems."""
    max_ram = int(quota.ram_gb * 1000)
    max_gpu = min(quota.gpu, len(gpus))
    out: list[str] = []
    if hard:
        if need.cpu and need.cpu > quota.cpu:
            out.append(f"needs {need.cpu:g} CPU cores, the {role} quota allows {quota.cpu:g}")
        if need.ram_mb and need.ram_mb > max_ram:
            out.append(f"needs {need.ram_mb} MB RAM, the {role} quota allows {max_ram} MB")
        if need.gpu and need.gpu > max_gpu:
            where = "this platform has none" if not gpus else f"at most {max_gpu} for your role"
            out.append(f"needs {need.gpu} GPU(s), {where}")
        if (need.disk_mb or 0) > MAX_DISK_MB:
            out.append(f"needs {need.disk_mb} MB disk, this platform offers at most {MAX_DISK_MB} MB")
        return out
    this = f"this {item.kind}"
    if need.gpu and need.gpu > max_gpu:
        if max_gpu == 0:
            why = "this platform has no GPU" if not gpus else f"the {role} role may not use GPUs"
            out.append(f"{this} recommends {_plural(need.gpu, 'GPU')}; it will run on CPU and may be slow ({why})")
        else:
            out.append(
                f"{this} recommends {_plural(need.gpu, 'GPU')}; it will run with {max_gpu} "
                f"(at most {max_gpu} for your role here)"
            )
    if need.cpu and need.cpu > quota.cpu:
        out.append(
            f"{this} recommends {_plural(need.cpu, 'CPU core')}; the {role} quota allows {quota.cpu:g}: "
            "it will run with fewer and may be slow"
        )
    if need.ram_mb and need.ram_mb > max_ram:
        out.append(
            f"{this} recommends {need.ram_mb} MB RAM; the {role} quota allows {max_ram} MB: it may run out of memory"
        )
    if (need.disk_mb or 0) > MAX_DISK_MB:
        out.append(f"{this} recommends {need.disk_mb} MB disk; this platform offers at most {MAX_DISK_MB} MB")
    return out


def deploy_config(
    item: CatalogItem,
    *,
    quota: Quota,
    role: str,
    gpus: list[GpuDevice],
    purpose: str = "inference",
    backends: list[str] | None = None,
    datacenters: dict[str, dict[str, Any]] | None = None,
    hard: bool = False,
) -> dict[str, Any]:
    """The form; ``datacenters`` (cluster backends): those the user's project may use, with their capacity.

    ``warnings`` say which declared resources this user cannot have here (the
    item still runs); ``problems`` say why it cannot run at all.
    """
    need: Resources = item.resources_training if purpose == "training" else item.resources_inference
    max_ram = int(quota.ram_gb * 1000)
    max_gpu = min(quota.gpu, len(gpus))
    shortfalls = _shortfalls(item, need, quota=quota, role=role, gpus=gpus, hard=hard)
    problems, warnings = (shortfalls, []) if hard else ([], shortfalls)
    if hard:  # the declared resources are the lower ends of the ranges
        low_cpu, low_ram, low_gpu = float(need.cpu or 1), int(need.ram_mb or MIN_RAM_MB), int(need.gpu or 0)
        low_disk = max(MIN_DISK_MB, need.disk_mb or 0)
    else:
        low_cpu, low_ram, low_gpu, low_disk = 1.0, min(MIN_RAM_MB, max_ram), 0, MIN_DISK_MB
    gpu_models = sorted({g.model for g in gpus})
    image = item.run.docker_image or ""
    services = ["deepaas"] if item.kind == "module" else ["tool"]
    form: dict[str, Any] = {
        "item": {"id": item.id, "kind": item.kind, "title": item.title},
        "purpose": purpose,
        "deployable": not problems,
        "problems": problems,
        "warnings": warnings,
        "general": {
            "title": {
                "name": "Deployment title",
                "value": "",
                "description": "A short title (less than 45 characters) to find this deployment again.",
            },
            "desc": {"name": "Deployment description", "value": ""},
            "backend": {
                "name": "Where to run",
                "value": (backends or ["local"])[0],
                "options": backends or ["local"],
                "description": "local: processes on this machine; nomad / oscar when configured.",
            },
            "docker_image": {"name": "Docker image", "value": image, "description": "Image used on cluster backends."},
            "docker_tag": {"name": "Docker tag", "value": item.run.docker_tag, "options": [item.run.docker_tag]},
            "service": {"name": "Service to run", "value": services[0], "options": services},
        },
        "hardware": {
            "cpu_num": _ranged("Number of CPUs", max(DEFAULT_CPU, need.cpu or DEFAULT_CPU), low_cpu, quota.cpu),
            "gpu_num": _ranged("Number of GPUs", need.gpu or 0, low_gpu, max_gpu),
            "gpu_type": {
                "name": "GPU model",
                "value": "",
                "options": ["", *gpu_models],
                "description": "Only if you have a hard requirement for a GPU model.",
            },
            "ram": _ranged("RAM memory (in MB)", need.ram_mb or DEFAULT_RAM_MB, low_ram, max_ram),
            "disk": _ranged("Disk memory (in MB)", max(DEFAULT_DISK_MB, need.disk_mb or 0), low_disk, MAX_DISK_MB),
        },
        "storage": {
            "mount": {
                "name": "Mount my storage",
                "value": True,
                "description": "Your storage is mounted at /storage in the deployment.",
            },
        },
    }
    if datacenters is not None:
        form["hardware"]["datacenter"] = {
            "name": "Datacenter",
            "value": "",
            "options": ["", *sorted(datacenters)],
            "description": "Where to run ('' : any your project may use); free resources in 'capacity'.",
        }
        form["capacity"] = datacenters
        if not datacenters:
            form["deployable"] = False
            form["problems"].append("your project may not use any datacenter of the cluster")
    return form


def check_choice(config: dict[str, Any], hardware: dict[str, Any]) -> list[str]:
    """Reasons why chosen hardware values fall outside the form's ranges or options (empty when fine)."""
    errors = []
    for key, value in hardware.items():
        field = config["hardware"].get(key)
        if field is None:
            errors.append(f"unknown hardware field {key!r}: use {', '.join(config['hardware'])}")
        elif "options" in field:
            if value not in field["options"]:
                errors.append(f"{key}={value!r} is not one of {field['options']}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{key} must be a number, got {value!r}")
        else:
            low, high = field["range"]
            if not (low <= value <= high):
                errors.append(f"{key}={value:g} is outside [{low:g}, {high:g}]")
    return errors
