"""Deployment records: the one place that reads and writes the ``deployments`` table.

The spawner, the API service and the launcher all go through these functions,
so that status transitions and timestamps are written the same way everywhere.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Text, cast, select

from ai4lab.core.db import ACTIVE_STATUSES, FINAL_STATUSES, Deployment, session_scope, utcnow

SHUTDOWN_REASON = "platform shutdown"
# backend_state keys whose values are secrets: kept sealed (ai4lab.core.secret_box), never in to_dict()
SECRET_STATE_KEYS = ("token", "cvat_password")
# the id (not the value) of the hub token given to the deployment's process: revoked when it ends
HUB_TOKEN_KEY = "hub_token_id"


#: Methods called with (deployment id, new status) after each change made in this process (weakly held).
_listeners: list[weakref.WeakMethod[Callable[[str, str], None]]] = []


def on_status_change(method: Callable[[str, str], None]) -> None:
    """Call ``method(dep_id, status)`` after every status change this process makes (a bound method, held weakly).

    Why: the API keeps running deployments in memory so that a proxied request
    costs no query; whichever lifecycle changes a status, the copy must follow.
    """
    _listeners.append(weakref.WeakMethod(method))


def create(
    db_url: str,
    *,
    owner: str,
    kind: str,
    name: str = "",
    spec: dict[str, Any] | None = None,
    backend: str = "local",
    status: str = "queued",
    vo: str | None = None,
) -> Deployment:
    with session_scope(db_url) as db:
        dep = Deployment(
            owner=owner,
            kind=kind,
            name=name,
            spec=spec or {},
            backend=backend,
            status=status,
            vo=vo,
            status_reason="",
            endpoints={},
            backend_state={},
        )
        db.add(dep)
        db.flush()
        return dep


def get(db_url: str, dep_id: str) -> Deployment | None:
    with session_scope(db_url) as db:
        return db.get(Deployment, dep_id)


def set_status(
    db_url: str,
    dep_id: str,
    status: str,
    reason: str = "",
    **fields: Any,
) -> Deployment | None:
    """Move a deployment to ``status``; also sets started/finished timestamps."""
    with session_scope(db_url) as db:
        dep = db.get(Deployment, dep_id)
        if dep is None:
            return None
        dep.status = status
        dep.status_reason = reason
        if status == "running" and dep.started_at is None:
            dep.started_at = utcnow()
        if status in FINAL_STATUSES:
            dep.finished_at = utcnow()
        for key, value in fields.items():
            if key == "backend_state" and HUB_TOKEN_KEY in (dep.backend_state or {}):
                # a backend's new state replaces the old one, but the token id must outlive it:
                # it is what revokes the token once the deployment ends
                value = {HUB_TOKEN_KEY: dep.backend_state[HUB_TOKEN_KEY], **value}
            setattr(dep, key, value)
    for ref in list(_listeners):
        if (listener := ref()) is None:
            _listeners.remove(ref)
        else:
            listener(dep_id, status)
    return dep


def remember_hub_token(db_url: str, dep_id: str, token_id: str) -> None:
    """Keep the id of the hub token given to the deployment's process, to revoke it when it ends."""
    with session_scope(db_url) as db:
        dep = db.get(Deployment, dep_id)
        if dep is not None:
            dep.backend_state = {**(dep.backend_state or {}), HUB_TOKEN_KEY: token_id}


def forget_hub_token(db_url: str, dep_id: str) -> None:
    """The token is revoked: nothing is left to do for it."""
    with session_scope(db_url) as db:
        dep = db.get(Deployment, dep_id)
        if dep is not None and HUB_TOKEN_KEY in (dep.backend_state or {}):
            dep.backend_state = {k: v for k, v in dep.backend_state.items() if k != HUB_TOKEN_KEY}


def ended_with_hub_token(db_url: str) -> list[Deployment]:
    """Deployments that ended (succeeded, failed, stopped, cancelled) whose hub token is not revoked yet."""
    with session_scope(db_url) as db:
        q = select(Deployment).where(
            Deployment.status.in_(FINAL_STATUSES),
            cast(Deployment.backend_state, Text).contains(f'"{HUB_TOKEN_KEY}"'),
        )
        return [d for d in db.scalars(q) if HUB_TOKEN_KEY in (d.backend_state or {})]


def seal_secrets(db_url: str, seal: Callable[[str], str], is_sealed: Callable[[object], bool]) -> int:
    """Seal secret values that rows written by older versions keep in clear text; returns how many rows changed."""
    changed = 0
    with session_scope(db_url) as db:
        q = select(Deployment)
        for dep in db.scalars(q):
            state = dep.backend_state or {}
            clear = {k: v for k in SECRET_STATE_KEYS if isinstance(v := state.get(k), str) and v and not is_sealed(v)}
            if clear:
                dep.backend_state = {**state, **{k: seal(v) for k, v in clear.items()}}
                changed += 1
    return changed


def list_deployments(
    db_url: str,
    owner: str | None = None,
    kind: str | None = None,
    active_only: bool = False,
    backend: str | None = None,
) -> list[Deployment]:
    """Deployments of ``owner`` (all owners when None: admins only); ``backend``: only those running there."""
    with session_scope(db_url) as db:
        q = select(Deployment).order_by(Deployment.created_at.desc())
        if owner is not None:
            q = q.where(Deployment.owner == owner)
        if kind is not None:
            q = q.where(Deployment.kind == kind)
        if active_only:
            q = q.where(Deployment.status.in_(ACTIVE_STATUSES))
        if backend is not None:
            q = q.where(Deployment.backend == backend)
        return list(db.scalars(q))


def gpus_in_use(db_url: str) -> set[str]:
    """GPU ids held by active deployments: never hand one GPU to two of them."""
    used: set[str] = set()
    for dep in list_deployments(db_url, active_only=True):
        used.update(dep.spec.get("gpu_ids", []))
    return used
