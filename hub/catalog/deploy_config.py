"""The deploy form of a catalog item, in the shape of ai4-papi's ``user.yaml``.

Each field has ``name``, ``value`` and ``description`` and, where it applies,
``range`` or ``options``. Ranges start at the item's declared minimums and stop
at the user's quota; when a minimum is above the quota the form says so
(``deployable: false`` with the reasons) instead of offering values that the
deployment would refuse later.
"""

from __future__ import annotations

from typing import Any

from ai4lab.catalog.model import CatalogItem, Resources
from ai4lab.settings import GpuDevice, Quota

DEFAULT_CPU = 1
DEFAULT_RAM_MB = 2000
DEFAULT_DISK_MB = 10000
MAX_DISK_MB = 50000


def _ranged(name: str, value: float, low: float, high: float, description: str = "") -> dict[str, Any]:
    field: dict[str, Any] = {"name": name, "value": min(max(value, low), high) if low <= high else low,
                             "range": [low, high]}
    if description:
        field["description"] = description
    return field


def deploy_config(
    item: CatalogItem,
    *,
    quota: Quota,
    role: str,
    gpus: list[GpuDevice],
    purpose: str = "inference",
    backends: list[str] | None = None,
    datacenters: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The form; ``datacenters`` (cluster backends): those the user's project may use, with their capacity."""
    need: Resources = item.resources_training if purpose == "training" else item.resources_inference
    problems: list[str] = []
    min_cpu = float(need.cpu or 1)
    min_ram = int(need.ram_mb or 500)
    min_gpu = int(need.gpu or 0)
    max_ram = int(quota.ram_gb * 1000)
    max_gpu = min(quota.gpu, len(gpus))
    if min_cpu > quota.cpu:
        problems.append(f"needs {min_cpu:g} CPU cores, the {role} quota allows {quota.cpu:g}")
    if min_ram > max_ram:
        problems.append(f"needs {min_ram} MB RAM, the {role} quota allows {max_ram} MB")
    if min_gpu > max_gpu:
        where = "this platform has none" if not gpus else f"at most {max_gpu} for your role"
        problems.append(f"needs {min_gpu} GPU(s), {where}")
    if (need.disk_mb or 0) > MAX_DISK_MB:
        problems.append(f"needs {need.disk_mb} MB disk, this platform offers at most {MAX_DISK_MB} MB")
    gpu_models = sorted({g.model for g in gpus})
    image = item.run.docker_image or ""
    services = ["deepaas"] if item.kind == "module" else ["tool"]
    form = {
        "item": {"id": item.id, "kind": item.kind, "title": item.title},
        "purpose": purpose,
        "deployable": not problems,
        "problems": problems,
        "general": {
            "title": {"name": "Deployment title", "value": "",
                      "description": "A short title (less than 45 characters) to find this deployment again."},
            "desc": {"name": "Deployment description", "value": ""},
            "backend": {"name": "Where to run", "value": (backends or ["local"])[0], "options": backends or ["local"],
                        "description": "local: processes on this machine; nomad / oscar when configured."},
            "docker_image": {"name": "Docker image", "value": image,
                             "description": "Image used on cluster backends."},
            "docker_tag": {"name": "Docker tag", "value": item.run.docker_tag, "options": [item.run.docker_tag]},
            "service": {"name": "Service to run", "value": services[0], "options": services},
        },
        "hardware": {
            "cpu_num": _ranged("Number of CPUs", max(DEFAULT_CPU, min_cpu), min_cpu, quota.cpu),
            "gpu_num": _ranged("Number of GPUs", min_gpu, min_gpu, max_gpu),
            "gpu_type": {"name": "GPU model", "value": "", "options": ["", *gpu_models],
                         "description": "Only if you have a hard requirement for a GPU model."},
            "ram": _ranged("RAM memory (in MB)", max(DEFAULT_RAM_MB, min_ram), min_ram, max_ram),
            "disk": _ranged("Disk memory (in MB)", max(DEFAULT_DISK_MB, need.disk_mb or 0),
                            max(1000, need.disk_mb or 0), MAX_DISK_MB),
        },
        "storage": {
            "mount": {"name": "Mount my storage", "value": True,
                      "description": "Your storage is mounted at /storage in the deployment."},
        },
    }
    if datacenters is not None:
        form["hardware"]["datacenter"] = {
            "name": "Datacenter", "value": "", "options": ["", *sorted(datacenters)],
            "description": "Where to run ('' : any your project may use); free resources in 'capacity'."}
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
