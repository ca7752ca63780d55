"""Flower tool deployments across an API restart, and token rotation: what the status file and backend say wins."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from ai4lab.core.errors import PlatformError
from ai4lab.core import db
from ai4lab.core import deployments as deps
from ai4lab.backends.local import LocalBackend
from ai4lab.deploy.lifecycle import Platform
from ai4lab.deploy.tools import LocalTools, _hash
from ai4lab.core.settings import Settings

CONFIG = {"rounds": 2, "strategy": "FedAvg", "metric": "accuracy"}


def make(settings: Settings, tmp: Path, name: str, state: dict, status: dict | None, dep_status: str = "running") -> str:
    workdir = tmp / name
    workdir.mkdir()
    if status is not None:
        (workdir / "status.json").write_text(json.dumps(status))
    dep = deps.create(settings.db_url, owner="ann", kind="tool", name="ai4lab-flower",
                      spec={"item": "ai4lab-flower", "config": CONFIG}, status=dep_status)
    deps.set_status(settings.db_url, dep.id, dep_status, backend_state={
        **state, "token": "t0", "port": 1234, "workdir": str(workdir), "status_file": str(workdir / "status.json")})
    return dep.id


async def _not_started(dep: deps.Deployment) -> None:
    _not_started.asked.append(dep.id)  # type: ignore[attr-defined]


_not_started.asked = []  # type: ignore[attr-defined]


async def test_recover_after_restart(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    db.upgrade(settings.db_url)
    alive = subprocess.Popen(["sleep", "60"], start_new_session=True)
    running = {"pid": alive.pid, "create_time": psutil.Process(alive.pid).create_time()}
    gone = {"pid": 2**22 - 7, "create_time": time.time()}
    alive_id = make(settings, tmp_path, "alive", running, {"state": "running", "rounds": []})
    done_id = make(settings, tmp_path, "done", gone, {
        "state": "finished", "model": "/x/model.npz", "mlflow_run_id": "abc",
        "rounds": [{"round": 1, "metrics": {"accuracy": 0.5}}, {"round": 2, "metrics": {"accuracy": 0.8}}]})
    lost_id = make(settings, tmp_path, "lost", gone, {"state": "round 1 done", "rounds": []})
    starting_id = make(settings, tmp_path, "starting", {}, None, dep_status="starting")
    tools = LocalTools(Platform.for_settings(settings, LocalBackend()))
    tools.start = _not_started  # type: ignore[method-assign]  # what recovery asks, not a real start
    try:
        await tools.recover()
        assert deps.get(settings.db_url, alive_id).status == "running"
        done = deps.get(settings.db_url, done_id)
        assert done.status == "succeeded" and "2 round(s) done; accuracy = 0.8" in done.status_reason
        assert done.endpoints["mlflow_run_id"] == "abc"
        lost = deps.get(settings.db_url, lost_id)
        assert lost.status == "failed" and "ended while the platform was down" in lost.status_reason
        # caught starting: started again
        starting = deps.get(settings.db_url, starting_id)
        assert starting.status == "starting" and "again after a platform restart" in starting.status_reason
        await asyncio.gather(*tools._tasks)
        assert _not_started.asked == [starting_id]

        # rotation: a new token, the server's hash file holds only the new one; not for ended deployments
        dep = deps.get(settings.db_url, alive_id)
        new = tools.rotate(dep)
        assert new["token"] != "t0" and new["address"].endswith(":1234")
        hashes = json.loads((tmp_path / "alive" / "tokens.json").read_text())
        assert hashes == [_hash(new["token"])]
        with pytest.raises(PlatformError, match="succeeded"):
            tools.rotate(deps.get(settings.db_url, done_id))
    finally:
        alive.kill()
        alive.wait()
