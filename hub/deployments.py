"""Deployment records: the one place that reads and writes the ``deployments`` table.

The spawner, the API service and the launcher all go through these functions,
so that status transitions and timestamps are written the same way everywhere.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ai4lab.db import ACTIVE_STATUSES, FINAL_STATUSES, Deployment, session_scope, utcnow

SHUTDOWN_REASON = "platform shutdown"


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
            owner=owner, kind=kind, name=name, spec=spec or {}, backend=backend, status=status, vo=vo,
            status_reason="", endpoints={}, backend_state={},
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
            setattr(dep, key, value)
        return dep


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
