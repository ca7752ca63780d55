"""The session form: profiles (kubespawner ``profile_list`` shape) plus IDE and resources.

Pure functions: the spawner hands in the user's quota and the free GPUs, these
render the form and validate what comes back. Shared by every spawner so that
the local and the Nomad spawner offer the same form.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, Field

from ai4lab.core.settings import GpuDevice, Quota, SessionEnvironment
from ai4lab.core.user_secrets import DELIVERIES

IDES: dict[str, dict[str, str]] = {
    "lab": {"display_name": "JupyterLab", "default_url": "/lab"},
    "vscode": {"display_name": "VS Code (code-server)", "default_url": "/vscode/"},
}

DEFAULT_PROFILES: list[dict[str, Any]] = [
    {
        "slug": "small",
        "display_name": "Small CPU session",
        "description": "1 core, 2 GB: notebooks, data exploration, trying models.",
        "default": True,
        "options": {"cpu": 1, "ram_gb": 2, "gpu": 0},
    },
    {
        "slug": "large",
        "display_name": "Large CPU session",
        "description": "More cores and memory for training on CPU.",
        "options": {"cpu": 2, "ram_gb": 4, "gpu": 0},
    },
    {
        "slug": "gpu",
        "display_name": "GPU session",
        "description": "One GPU from this machine's inventory.",
        "options": {"cpu": 2, "ram_gb": 8, "gpu": 1},
    },
]


class SessionOptions(BaseModel):
    """What a user chose for one IDE session; exported to the session as AI4LAB_* variables."""

    profile: str = Field(default="", description="slug of the chosen profile")
    ide: str = Field(default="lab", description="lab or vscode")
    environment: str = Field(default="base", description="session environment: base, pytorch, tensorflow, ...")
    cpu: float = Field(description="CPU cores")
    ram_gb: float = Field(description="memory in GB")
    gpu: int = Field(default=0, description="number of GPUs")
    gpu_model: str = Field(default="", description="GPU model asked for ('' any); cluster spawners only")
    secrets: list[str] = Field(default_factory=list, description="names of the user's secrets given to the session")
    secrets_as: str = Field(default="env", description="env (variables) or files (in $AI4LAB_SECRETS_DIR)")

    def dump(self) -> dict[str, Any]:
        """The options as stored (user_options, deployment spec): gpu_model and secrets only when chosen.

        Secrets are names only: their values are read when the session starts, never stored with it.
        """
        unset = set() if self.gpu_model else {"gpu_model"}
        if not self.secrets:
            unset |= {"secrets", "secrets_as"}
        return self.model_dump(exclude=unset)


def _number(raw: Any, name: str, kind: type) -> float | int:
    if isinstance(raw, list):
        raw = raw[0] if raw else ""
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {raw!r}")
    if kind is int and isinstance(raw, float) and raw != int(raw):
        raise ValueError(f"{name} must be a whole number, got {raw!r}")
    return value


def _first(raw: Any) -> Any:
    return raw[0] if isinstance(raw, list) and raw else raw


def chosen_secrets(raw: dict[str, Any], have: Collection[str] | None) -> tuple[list[str], str]:
    """The secrets asked for (a list, or one comma-separated string from a form) and how to give them.

    ``have``: the user's secret names; None where the spawner cannot give secrets (then asking is refused).
    """
    asked = raw.get("secrets") or []
    if isinstance(asked, str):
        asked = [asked]
    if not isinstance(asked, list) or not all(isinstance(n, str) for n in asked):
        raise ValueError("secrets must be a list of names of your secrets")
    names = list(dict.fromkeys(n.strip() for item in asked for n in item.split(",") if n.strip()))
    how = str(_first(raw.get("secrets_as")) or "env")
    if how not in DELIVERIES:
        raise ValueError(f"secrets_as must be one of {', '.join(DELIVERIES)}, got {how!r}")
    if not names:
        return [], "env"
    if have is None:
        raise ValueError("this spawner cannot give secrets to sessions: start the session without them")
    if missing := [n for n in names if n not in have]:
        raise ValueError(
            f"no secret {', '.join(repr(n) for n in missing)} of yours: create it first (ai4lab secrets set NAME)"
        )
    return names, how


def validate_options(
    raw: dict[str, Any],
    *,
    quota: Quota,
    role: str,
    profiles: list[dict[str, Any]],
    free_gpus: int,
    ides: dict[str, dict[str, str]] = IDES,
    free_by_model: dict[str, int] | None = None,
    secret_names: Collection[str] | None = None,
    environments: Collection[str] = ("base",),
) -> SessionOptions:
    """Turn form or API input into checked options; ValueError says what to fix.

    ``free_by_model`` (cluster spawners): free GPUs per model offered; the user may
    then pick a ``gpu_model`` ('' for any of them). ``secret_names``: the user's
    secrets a session may be given (None: this spawner gives none).
    """
    secrets, secrets_as = chosen_secrets(raw, secret_names)
    by_slug = {p["slug"]: p for p in profiles}
    slug = _first(raw.get("profile")) or next(
        (p["slug"] for p in profiles if p.get("default")), profiles[0]["slug"] if profiles else ""
    )
    if by_slug and slug not in by_slug:
        raise ValueError(f"unknown profile {slug!r}: choose one of {', '.join(by_slug)}")
    base = dict(by_slug.get(slug, {}).get("options", {}))
    ide = _first(raw.get("ide")) or base.get("ide", "lab")
    if ide not in ides:
        raise ValueError(f"unknown IDE {ide!r}: choose one of {', '.join(ides)}")
    envs = list(environments)
    environment = str(_first(raw.get("environment")) or base.get("environment") or envs[0])
    if environment not in envs:
        raise ValueError(f"unknown environment {environment!r}: choose one of {', '.join(envs)}")
    cpu = _number(raw.get("cpu", base.get("cpu", 1)), "CPU cores", float)
    ram = _number(raw.get("ram_gb", base.get("ram_gb", 2)), "RAM (GB)", float)
    gpu = _number(raw.get("gpu", base.get("gpu", 0)), "GPUs", int)
    if cpu <= 0:
        raise ValueError(f"CPU cores must be positive, got {cpu:g}")
    if ram <= 0:
        raise ValueError(f"RAM must be positive, got {ram:g} GB")
    if gpu < 0:
        raise ValueError(f"GPUs cannot be negative, got {gpu}")
    if cpu > quota.cpu:
        raise ValueError(f"{cpu:g} CPU cores is over the {role} quota of {quota.cpu:g}")
    if ram > quota.ram_gb:
        raise ValueError(f"{ram:g} GB RAM is over the {role} quota of {quota.ram_gb:g} GB")
    if gpu > quota.gpu:
        raise ValueError(f"{gpu} GPU(s) is over the {role} quota of {quota.gpu}")
    model = str(_first(raw.get("gpu_model")) or "")
    chosen: dict[str, Any] = {
        "profile": slug,
        "ide": ide,
        "environment": environment,
        "cpu": cpu,
        "ram_gb": ram,
        "gpu": gpu,
        "secrets": secrets,
        "secrets_as": secrets_as,
    }
    if free_by_model is not None:
        if model and model not in free_by_model:
            offered = ", ".join(free_by_model) or "none"
            raise ValueError(f"GPU model {model!r} is not offered here (offered: {offered})")
        if gpu and model and gpu > free_by_model[model]:
            raise ValueError(f"{gpu} GPU(s) of model {model} asked but {free_by_model[model]} free in the cluster")
        if gpu and not model and gpu > max(free_by_model.values(), default=0):
            raise ValueError(
                f"{gpu} GPU(s) asked but at most {max(free_by_model.values(), default=0)} "
                "of one model free in the cluster"
            )
        return SessionOptions(**chosen, gpu_model=model if gpu else "")
    if model:
        raise ValueError("choosing a GPU model is only possible on a cluster spawner")
    if gpu > free_gpus:
        raise ValueError(
            f"{gpu} GPU(s) asked but {free_gpus} free on this machine" + (" (it has no GPU)" if free_gpus == 0 else "")
        )
    return SessionOptions(**chosen)


_env = Environment(loader=PackageLoader("ai4lab", "templates"), autoescape=select_autoescape(["html"]))


def render_form(
    *,
    quota: Quota,
    role: str,
    profiles: list[dict[str, Any]],
    gpus: list[GpuDevice],
    free_gpus: int,
    ides: dict[str, dict[str, str]] = IDES,
    gpu_models: dict[str, dict[str, int]] | None = None,
    limits_note: str = "",
    secret_names: list[str] | None = None,
    environments: dict[str, SessionEnvironment] | None = None,
    built: Collection[str] = (),
) -> str:
    """The form; ``gpu_models`` (cluster spawners): {model: {free, total}} offered as a choice.

    ``limits_note``: shown when the machine cannot enforce the CPU and RAM chosen ("limits not enforced: ...").
    ``secret_names``: the user's secrets, offered as check boxes (None: this spawner gives no secrets).
    ``environments``: the session environments offered; ``built``: those ready to start at once (the
    others are built at their first start, which the form says).
    """
    return _env.get_template("spawn_form.html").render(
        quota=quota,
        role=role,
        profiles=profiles,
        gpus=gpus,
        free_gpus=free_gpus,
        ides=ides,
        gpu_models=gpu_models,
        limits_note=limits_note,
        secret_names=secret_names,
        environments=environments or {},
        built=set(built),
    )
