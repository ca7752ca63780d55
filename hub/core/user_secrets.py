"""Users' secrets: named values (a Hugging Face token, an S3 key, an MLflow password) kept for their deployments.

AI4OS keeps these in Vault; here they are rows of the platform database whose
value is sealed with the state folder's key (``ai4lab.core.secret_box``), so a
copy of the database alone reveals nothing. A value is written once by its
owner and then only read by the platform, when it starts a deployment or a
session of that owner that names it (``secrets: [names]``): nothing lists a
value back, not even to admins. Names are environment-variable names, because
that is the default way a process gets them.

Names that the platform itself sets in sessions and jobs (``PATH``,
``AI4LAB_*``, ``JUPYTERHUB_*``, the MLflow tracking variables ...) are refused:
a secret could not take their place anyway (the platform's value wins), and
a user should learn that when storing it, not when a job misbehaves.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from ai4lab.core.db import UserSecret, session_scope, utcnow
from ai4lab.core.errors import PlatformError
from ai4lab.core.secret_box import box_for

if TYPE_CHECKING:
    from ai4lab.core.settings import Settings

#: A secret's name: what an environment variable may be called (and a safe file name).
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
NAME_MAX = 64
_NAME = re.compile(NAME_PATTERN)
#: Variables the platform sets in sessions and jobs: a secret may not be called so.
RESERVED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LC_ALL",
        "TZ",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONUNBUFFERED",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "CUDA_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
        "MEM_LIMIT",
        "CPU_LIMIT",
        "CODE_WORKINGDIR",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "FLWR_HOME",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_RUN_NAME",
    }
)
RESERVED_PREFIXES = ("AI4LAB_", "JUPYTERHUB_", "JPY_")
#: How a deployment gets its secrets: environment variables, or files in ``$AI4LAB_SECRETS_DIR``.
DELIVERIES = ("env", "files")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a secret, or None when it can."""
    if not name:
        return "a secret needs a name"
    if len(name) > NAME_MAX:
        return f"secret name {name[:20]!r}... is longer than {NAME_MAX} characters"
    if not _NAME.match(name):
        return (
            f"secret name {name!r} is not an environment variable name: use letters, digits and _, "
            "not starting with a digit (e.g. HF_TOKEN)"
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        return f"secret name {name!r} is a variable the platform sets itself: choose another name"
    return None


def check_name(name: str) -> str:
    """``name`` if it may name a secret; 400 with the reason otherwise."""
    if problem := name_problem(name):
        raise PlatformError(400, problem)
    return name


def check_value(value: str, max_bytes: int) -> str:
    """``value`` if it can be stored and handed to a process (no NUL byte, not empty, not too large)."""
    if not value:
        raise PlatformError(400, "the secret's value is empty: give a value")
    if "\x00" in value:
        raise PlatformError(400, "the secret's value contains a NUL byte, which no environment variable can hold")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"): no process could be given it
        raise PlatformError(400, "the secret's value is not valid Unicode text") from None
    if size > max_bytes:
        raise PlatformError(413, f"the secret's value has {size} bytes; at most {max_bytes} are kept")
    return value


def _view(row: UserSecret) -> dict[str, Any]:
    def iso(d: datetime | None) -> str | None:
        return d.isoformat() if d else None

    return {"name": row.name, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


def list_secrets(db_url: str, owner: str) -> list[dict[str, Any]]:
    """``owner``'s secrets by name, with when they were created and last changed; never their values."""
    with session_scope(db_url) as s:
        rows = s.scalars(select(UserSecret).where(UserSecret.owner == owner).order_by(UserSecret.name))
        return [_view(r) for r in rows]


def names(db_url: str, owner: str) -> list[str]:
    return [s["name"] for s in list_secrets(db_url, owner)]


def put(settings: Settings, owner: str, name: str, value: str, *, replace: bool) -> tuple[dict[str, Any], bool]:
    """Store ``owner``'s secret ``name``, sealed; the listing entry and whether it is new.

    ``replace`` False (``POST /secrets``): an existing secret of that name is a 409,
    so that a typo cannot overwrite a token the user cannot see again.
    """
    check_name(name)
    check_value(value, settings.secret_max_bytes)
    sealed = box_for(settings.state).seal(value)
    with session_scope(settings.db_url) as s:
        row = s.get(UserSecret, (owner, name))
        if row is not None:
            if not replace:
                raise PlatformError(
                    409,
                    f"you have a secret {name!r} already: replace it with PUT /secrets/{name} "
                    "(ai4lab secrets set --replace), or delete it first",
                )
            row.value = sealed
            row.updated_at = utcnow()
            s.flush()
            return _view(row), False
        count = s.scalar(select(func.count()).select_from(UserSecret).where(UserSecret.owner == owner)) or 0
        if count >= settings.secrets_per_user:
            raise PlatformError(
                403, f"you keep {count} secrets, the most this platform allows: delete one you no longer use"
            )
        row = UserSecret(owner=owner, name=name, value=sealed)
        s.add(row)
        s.flush()
        return _view(row), True


def delete(db_url: str, owner: str, name: str) -> None:
    """Forget ``owner``'s secret ``name`` (404 when they have none of that name)."""
    with session_scope(db_url) as s:
        row = s.get(UserSecret, (owner, name))
        if row is None:
            raise PlatformError.not_found(f"secret {name!r} of yours")
        s.delete(row)


def check_names(db_url: str, owner: str, wanted: list[str]) -> list[str]:
    """The names a deployment asks for, each one a secret of ``owner``; 400 naming those that are not."""
    have = set(names(db_url, owner))
    missing = [n for n in dict.fromkeys(wanted) if n not in have]
    if missing:
        raise PlatformError(
            400,
            f"no secret {', '.join(repr(n) for n in missing)} of yours: create it first "
            "(ai4lab secrets set NAME, or POST /secrets)",
        )
    return list(dict.fromkeys(wanted))


def values(db_url: str, state: Path, owner: str, wanted: list[str]) -> dict[str, str]:
    """The clear values of ``owner``'s secrets ``wanted``, for a process being started; 409 for one deleted since.

    Read at every start (not copied into the deployment), so that a replaced value
    reaches the next start and a deleted one reaches no process any more.
    """
    if not wanted:
        return {}
    box = box_for(state)
    with session_scope(db_url) as s:
        rows = {
            r.name: r.value
            for r in s.scalars(select(UserSecret).where(UserSecret.owner == owner, UserSecret.name.in_(wanted)))
        }
    if missing := [n for n in wanted if n not in rows]:
        raise PlatformError(
            409, f"secret {', '.join(repr(n) for n in missing)} was deleted since this deployment was asked for"
        )
    return {n: box.open(rows[n]) or "" for n in wanted}
