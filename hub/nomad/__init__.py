"""Nomad support: pure job builders (``jobs``) and their operator configuration (``config``).

The HTTP side lives in ``ai4lab.backends.nomad``.
"""

from ai4lab.nomad.config import (
    Datacenter,
    Federation,
    NomadDefaults,
    ProjectAllowance,
    duration_ns,
    load_defaults,
    load_federation,
)
from ai4lab.nomad.jobs import (
    GPU_DEVICE,
    KINDS,
    MAIN_TASK,
    NomadJobSpec,
    StorageSpec,
    dns_label,
    job_id,
    register_request,
    render_job,
)

__all__ = [
    "GPU_DEVICE",
    "KINDS",
    "MAIN_TASK",
    "Datacenter",
    "Federation",
    "NomadDefaults",
    "NomadJobSpec",
    "ProjectAllowance",
    "StorageSpec",
    "dns_label",
    "duration_ns",
    "job_id",
    "load_defaults",
    "load_federation",
    "register_request",
    "render_job",
]
