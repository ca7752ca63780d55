"""A platform restart during a training: the record is kept, re-attached or marked failed with the reason."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil

from ai4lab.core import db
from ai4lab.core import deployments as deps
from ai4lab.backends.local import LocalBackend
from ai4lab.deploy.lifecycle import Platform
from ai4lab.deploy.trainings import LocalJobs
from ai4lab.core.isolation import give
from ai4lab.core.settings import Settings


def make(settings: Settings, state: dict) -> str:
    dep = deps.create(settings.db_url, owner="ann", kind="training", name="ai4lab-digits",
                      spec={"item": "ai4lab-digits", "gpu": 0}, status="running")
    deps.set_status(settings.db_url, dep.id, "running", backend_state=state)
    return dep.id


async def test_recover_after_restart(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    db.upgrade(settings.db_url)
    # still running: a process started before the "restart" (not a child of this backend)
    alive = subprocess.Popen(["sleep", "60"], start_new_session=True)
    alive_id = make(settings, {"pid": alive.pid, "create_time": psutil.Process(alive.pid).create_time(),
                               "result": str(tmp_path / "none.json")})
    # gone without a result
    gone_id = make(settings, {"pid": 2**22 - 7, "create_time": time.time(), "result": str(tmp_path / "no.json")})
    # finished while the platform was down, with its result written
    result = tmp_path / "done.json"
    result.write_text(json.dumps({"output": {"model_path": "/x/model.joblib", "val_accuracy": 0.9},
                                  "mlflow_run_id": "abc"}))
    done_id = make(settings, {"pid": 2**22 - 9, "create_time": time.time(), "result": str(result)})
    backend = LocalBackend()
    give(result, backend.identity("ann"))  # the job wrote it, as its owner (anything else is not read)
    try:
        await LocalJobs(Platform.for_settings(settings, backend)).recover()
        assert deps.get(settings.db_url, alive_id).status == "running"
        gone = deps.get(settings.db_url, gone_id)
        assert gone.status == "failed" and "ended without a result" in gone.status_reason
        done = deps.get(settings.db_url, done_id)
        assert done.status == "succeeded" and done.endpoints["mlflow_run_id"] == "abc"
        assert done.endpoints["model_path"] == "/x/model.joblib"
    finally:
        alive.kill()
        alive.wait()
