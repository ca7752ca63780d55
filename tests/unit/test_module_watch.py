"""The watcher of module deployments: dead servers are marked failed, idle ones are stopped."""

from __future__ import annotations

from pathlib import Path

import psutil

from ai4lab.core import db
from ai4lab.core import deployments as deps
from ai4lab.backends.base import JobSpec
from ai4lab.backends.local import LocalBackend
from ai4lab.deploy.lifecycle import Platform
from ai4lab.deploy.modules import ModuleServers
from ai4lab.core.isolation import Accounts
from ai4lab.core.settings import Settings


async def start(backend: LocalBackend, settings: Settings, command: list[str]) -> str:
    state = await backend.submit(JobSpec(name="t", command=command, log_path=settings.logs_dir / "t.log"))
    dep = deps.create(settings.db_url, owner="ann", kind="module", name="m", spec={"entry_point": "m"},
                      status="running")
    deps.set_status(settings.db_url, dep.id, "running", backend_state=state)
    return dep.id


async def test_idle_deployments_are_stopped_and_dead_ones_failed(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "s", deployment_idle_timeout=60)
    db.upgrade(settings.db_url)
    backend = LocalBackend(Accounts(enabled=False))  # the watcher's logic, not who runs the process
    watcher = ModuleServers(Platform.for_settings(settings, backend))
    idle = await start(backend, settings, ["sleep", "300"])
    busy = await start(backend, settings, ["sleep", "300"])
    dead = await start(backend, settings, ["sh", "-c", "echo boom; exit 3"])
    pid = deps.get(settings.db_url, idle).backend_state["pid"]
    proc = psutil.Process(pid)
    watcher.touch(busy)
    watcher.last_used[idle] = watcher.last_used[busy] - 61  # no request for longer than the timeout
    import asyncio

    await asyncio.sleep(0.3)  # let the failing one exit
    await watcher.watch()
    stopped = deps.get(settings.db_url, idle)
    assert stopped.status == "stopped" and "without requests" in stopped.status_reason
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert deps.get(settings.db_url, busy).status == "running"
    failed = deps.get(settings.db_url, dead)
    assert failed.status == "failed" and "code 3" in failed.status_reason and "boom" in failed.status_reason
    await backend.stop(deps.get(settings.db_url, busy).backend_state)
