"""Ctrl-C stops everything the platform started; a restart keeps users, roles, deployments, sessions."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.platform_harness import Platform, gone, platform_processes

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("lifecycle")]


def wait_for(api, dep_id: str, status: str, timeout: float = 180) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = api.get(f"/services/ai4lab/deployments/{dep_id}").json()
        if dep["status"] == status:
            return dep
        time.sleep(0.5)
    raise TimeoutError(f"{dep_id} not {status}: {dep}")


def test_restart_keeps_everything_and_ctrl_c_leaves_no_orphans(tmp_path: Path) -> None:
    p = Platform.create(tmp_path / "state")
    p.start()
    first_password = p.admin_password
    assert first_password
    p.add_user("eve", "eve-password", role="advanced")
    form = p.login("eve", "eve-password").get("/hub/spawn").text
    assert "This machine has no GPU: sessions run on CPU." in form  # no inventory configured here
    token = p.token("eve")
    api = p.api(token)
    assert api.post("/hub/api/users/eve/server", json={"ide": "lab", "cpu": 2, "ram_gb": 4}).status_code in (201, 202)
    p.wait_server(token, "eve")
    api.put("/services/ai4lab/storage/keep.txt", content=b"kept")
    module = api.post("/services/ai4lab/deployments", json={"kind": "module", "item": "ai4lab-diabetes"}).json()
    wait_for(api, module["id"], "running")
    deps_before = api.get("/services/ai4lab/deployments", params={"kind": "ide"}).json()
    assert [d["status"] for d in deps_before] == ["running"]
    tree = p.process_tree()
    names = " ".join(" ".join(proc.cmdline()) for proc in tree)
    assert "configurable-http-proxy" in names and "ai4lab.api" in names and "mlflow" in names
    session_pids = [proc for proc in platform_processes(p.state) if "jupyterhub-singleuser" in " ".join(proc.cmdline())]
    assert len(session_pids) == 1

    # Ctrl-C: everything stops, nothing is left behind, and nothing failed on the way
    assert p.stop(signal.SIGINT) == 0
    assert gone(tree + session_pids) == []
    assert gone(platform_processes(p.state)) == []
    assert "ai4lab stopped" in p.output
    assert "Stopping 2 services and 1 session(s) together" in p.hub_log()
    assert "Traceback" not in p.hub_log(), p.hub_log()[-5000:]

    # Restart: same admin credentials, users and roles, deployment record, the session comes back
    p.start()
    assert "admin login: admin / " not in p.output  # the password is shown when it is created, only
    assert "ai4lab users password admin" in p.output
    p.login("admin", first_password)
    users = {u["name"]: u for u in json.loads(p.cli("users", "list", "--json").stdout)}
    assert users["eve"]["role"] == "advanced" and users["admin"]["admin"] is True
    srv = p.wait_server(token, "eve")  # the old token is still valid, the session is running again
    assert srv["user_options"]["cpu"] == 2.0
    deps_after = api.get("/services/ai4lab/deployments", params={"kind": "ide"}).json()
    assert [d["id"] for d in deps_after] == [deps_before[0]["id"]]
    assert deps_after[0]["status"] == "running"
    # the module deployment stopped by the shutdown is started again, and answers
    wait_for(api, module["id"], "running")
    rows = "[[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]"
    r = api.post(f"/services/ai4lab/deployments/{module['id']}/predict", json={"rows": rows})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    assert api.get("/user/eve/api/contents/storage/keep.txt").json()["content"] == "kept"

    # SIGTERM works the same way as Ctrl-C
    tree = p.process_tree()
    assert p.stop(signal.SIGTERM) == 0
    assert gone(tree) == []
    assert gone(platform_processes(p.state)) == []
    assert "Traceback" not in p.hub_log(), p.hub_log()[-5000:]


def test_make_run_starts_the_platform_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    """The README's run command, as a person types it: `make run`, open the URL, log in, Ctrl-C."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    p = Platform.create(tmp_path / "state")
    env = {**p.env, "VENV": str(Path(sys.executable).parent.parent)}
    log = open(tmp_path / "make-run.log", "w+")
    proc = subprocess.Popen(["make", "run", f"VENV={env['VENV']}"], cwd=repo, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        text = ""
        while "press Ctrl-C" not in text:
            assert time.monotonic() < deadline, text
            assert proc.poll() is None, text
            time.sleep(0.5)
            log.seek(0)
            text = log.read()
        assert f"ai4lab is running at {p.url}" in text
        password = text.split("admin login: admin / ")[1].split()[0]
        client = p.login("admin", password)
        assert client.get("/hub/home").status_code == 200
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        code = proc.wait(timeout=90)
    log.seek(0)
    text = log.read()
    # make itself reports the interrupt (exit by SIGINT); the platform under it stopped cleanly
    assert code in (0, -signal.SIGINT, 130), text
    assert "ai4lab stopped (hub exit code 0)" in text
    assert gone(tree) == []
    assert gone(platform_processes(p.state)) == []
