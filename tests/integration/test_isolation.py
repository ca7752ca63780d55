"""Users are kept apart through the file system and anything a session can run (real sessions, real accounts).

Two users, each with a running JupyterLab session and a finished training:
from B's kernel and B's terminal, A's files and the platform's state are out
of reach; B's token cannot do what B may not; B's processes run as B.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ai4lab.core import deployments as deps
from ai4lab.backends.local import start_ticks
from ai4lab.core.limits import CgroupLimits
from ai4lab.core.settings import Settings
from tests.integration.test_trainings import upload_digit_dataset, wait_status
from tests.kernel_client import execute_in_session, run_in_terminal
from tests.platform_harness import Platform

pytestmark = [
    pytest.mark.integration, pytest.mark.xdist_group("platform"),
    pytest.mark.skipif(os.geteuid() != 0, reason="per-user accounts need the platform to run as root"),
]
API = "/services/ai4lab"
OPTIONS = {"profile": "small", "ide": "lab", "cpu": 1, "ram_gb": 2, "gpu": 0}


def system_user(name: str) -> pwd.struct_passwd:
    return pwd.getpwnam(f"ai4-{name}")


@pytest.fixture(scope="module")
def users(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """iso-a and iso-b, each with a running session and a succeeded training of ai4lab-digits."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("iso-a", "iso-b"):
        platform.add_user(name, f"{name}-password", role="intermediate")
        token = platform.token(name)
        api = platform.api(token)
        r = api.post(f"/hub/api/users/{name}/server", json=OPTIONS)
        assert r.status_code in (201, 202), r.text
        out[name] = {"token": token, "api": api}
    for name, u in out.items():
        platform.wait_server(u["token"], name)
        folder = upload_digit_dataset(u["api"], tmp_path_factory.mktemp(name), n=60)
        r = u["api"].post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits", "dataset": folder,
                                                      "args": {"epochs": 2}})
        assert r.status_code == 201, r.text
        u["training"] = r.json()["id"]
    for u in out.values():
        dep = wait_status(u["api"], u["training"], ("succeeded", "failed"))
        assert dep["status"] == "succeeded", (dep, u["api"].get(f"{API}/deployments/{dep['id']}/logs").text)
    return out


def probe_code(paths: dict[str, str]) -> str:
    """Python run in a kernel: try each read / list / write and report the outcome."""
    return f"""
import json, os
def attempt(kind, path):
    try:
        if kind == "list":
            os.listdir(path)
        elif kind == "read":
            open(path, "rb").read(1)
        else:
            open(path, "a").close()
        return "ok"
    except OSError as e:
        return type(e).__name__
print("RESULT " + json.dumps({{k: attempt(*v.split(":", 1)) for k, v in {json.dumps(paths)}.items()}}))
"""


def test_b_cannot_reach_a_or_the_platform_from_a_kernel(platform: Platform, users: dict[str, dict[str, Any]]) -> None:
    state = platform.state.resolve()
    a = users["iso-a"]
    out_a = state / "storage" / "iso-a" / "models" / "ai4lab-digits" / a["training"]
    paths = {
        "state folder": f"list:{state}",
        "storage root": f"list:{state / 'storage'}",
        "A's workspace": f"list:{state / 'workspaces' / 'iso-a'}",
        "A's storage": f"list:{state / 'storage' / 'iso-a'}",
        "A's dataset": f"list:{state / 'storage' / 'iso-a' / 'datasets'}",
        "A's training outputs": f"list:{out_a}",
        "write into A's workspace": f"write:{state / 'workspaces' / 'iso-a' / 'planted.py'}",
        "write into A's storage": f"write:{state / 'storage' / 'iso-a' / 'planted.txt'}",
        "platform database": f"read:{state / 'ai4lab.sqlite'}",
        "hub database": f"read:{state / 'jupyterhub.sqlite'}",
        "secrets.json": f"read:{state / 'secrets.json'}",
        "logs": f"list:{state / 'logs'}",
        "B's own storage": f"list:{state / 'storage' / 'iso-b'}",
        "B's own workspace write": f"write:{state / 'workspaces' / 'iso-b' / 'mine.txt'}",
    }
    text = execute_in_session(platform.url, "iso-b", users["iso-b"]["token"], probe_code(paths))
    result = json.loads(text.split("RESULT ", 1)[1])
    assert result.pop("B's own storage") == "ok" and result.pop("B's own workspace write") == "ok"
    assert result == {k: "PermissionError" for k in result}, result
    assert not (state / "workspaces" / "iso-a" / "planted.py").exists()


def test_b_cannot_reach_a_or_the_platform_from_a_terminal(platform: Platform,
                                                           users: dict[str, dict[str, Any]]) -> None:
    state = platform.state.resolve()
    text = run_in_terminal(platform.url, "iso-b", users["iso-b"]["token"],
                           f"id -un; cat {state}/secrets.json; ls {state}/storage/iso-a; "
                           f"ls {state}/workspaces/iso-a; touch {state}/storage/iso-a/x")
    assert "ai4-iso-b" in text
    assert text.count("Permission denied") >= 4, text
    assert "api_service_token" not in text


def test_no_platform_secret_reaches_a_session(platform: Platform, users: dict[str, dict[str, Any]]) -> None:
    secrets = json.loads((platform.state / "secrets.json").read_text())
    env = execute_in_session(platform.url, "iso-b", users["iso-b"]["token"],
                             "import os, json; print(json.dumps(dict(os.environ)))")
    for key, value in secrets.items():
        assert str(value) not in env, f"{key} reached the session's environment"


def test_b_token_cannot_do_what_b_may_not(platform: Platform, users: dict[str, dict[str, Any]]) -> None:
    # the token inside B's session, as a notebook cell would use it
    session_token = execute_in_session(platform.url, "iso-b", users["iso-b"]["token"],
                                       "import os; print(os.environ['JUPYTERHUB_API_TOKEN'])").strip()
    for token in (users["iso-b"]["token"], session_token):
        hub = httpx.Client(base_url=platform.url + "/hub/api", headers={"Authorization": f"token {token}"})
        assert hub.get("/users").status_code == 403
        assert hub.get("/users/iso-a").status_code in (403, 404)
        assert hub.post("/users/iso-a/server", json=OPTIONS).status_code in (403, 404)
        assert hub.delete("/users/iso-a/server").status_code in (403, 404)
        assert hub.post("/users/iso-b/tokens", json={"scopes": ["admin:users"]}).status_code in (400, 403)
        assert hub.patch("/users/iso-b", json={"admin": True}).status_code == 403
        api = httpx.Client(base_url=platform.url + API, headers={"Authorization": f"token {token}"})
        assert api.get(f"/deployments/{users['iso-a']['training']}").status_code == 404
        assert api.get("/deployments", params={"all": "true"}).status_code in (200, 403)
        listed = api.get("/deployments", params={"all": "true"})
        if listed.status_code == 200:
            assert all(d["owner"] == "iso-b" for d in listed.json())


def test_processes_and_outputs_belong_to_their_owner(platform: Platform, users: dict[str, dict[str, Any]]) -> None:
    b = system_user("iso-b")
    state = platform.state.resolve()
    sessions = [p for p in psutil.process_iter(["cmdline", "uids"])
                if any("jupyterhub-singleuser" in c for c in (p.info["cmdline"] or []))]
    mine = [p for p in sessions if _env_of(p).get("JUPYTERHUB_USER") == "iso-b"]
    assert mine, "B's session process not found"
    runtime = Settings().runtime_dir.resolve()
    checkout = Path(__file__).resolve().parents[2]
    for p in mine:
        assert p.uids().real == b.pw_uid and p.uids().effective == b.pw_uid
        # what users execute lives under the runtime prefix, wherever the repository was cloned
        program = Path(p.cmdline()[1] if Path(p.cmdline()[0]).name.startswith("python") else p.cmdline()[0])
        assert program.resolve().is_relative_to(runtime) and not program.resolve().is_relative_to(checkout)
        for child in p.children(recursive=True):  # kernels, terminals
            assert child.uids().effective == b.pw_uid
    # a module deployment of B runs as B
    api = users["iso-b"]["api"]
    dep = api.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits"}).json()
    try:
        wait_status(api, dep["id"], ("running",), timeout=240)
        procs = [p for p in psutil.process_iter(["cmdline"]) if any(f"deployments/{dep['id']}/api" in c
                                                                    for c in (p.info["cmdline"] or []))]
        assert procs and all(p.uids().effective == b.pw_uid for p in procs)
        assert all(Path(p.cmdline()[0]).is_relative_to(runtime) or Path(p.cmdline()[1]).is_relative_to(runtime)
                   for p in procs), [p.cmdline()[:2] for p in procs]
    finally:
        api.delete(f"{API}/deployments/{dep['id']}")
    # the training wrote its outputs as B, private to B
    out = state / "storage" / "iso-b" / "models" / "ai4lab-digits" / users["iso-b"]["training"]
    files = [f for f in out.rglob("*") if f.is_file()]
    assert files and all(f.stat().st_uid == b.pw_uid for f in files)
    for folder in (state / "storage" / "iso-b", state / "workspaces" / "iso-b"):
        st = folder.stat()
        assert st.st_uid == b.pw_uid and stat.S_IMODE(st.st_mode) == 0o700
    for private in ("secrets.json", "ai4lab.sqlite", "jupyterhub.sqlite"):
        assert stat.S_IMODE((state / private).stat().st_mode) & 0o077 == 0, private
    assert stat.S_IMODE(state.stat().st_mode) == 0o711


def _env_of(p: psutil.Process) -> dict[str, str]:
    try:
        return p.environ()
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return {}


def test_sessions_stop_cleanly(platform: Platform, users: dict[str, dict[str, Any]]) -> None:
    uids = (system_user("iso-a").pw_uid, system_user("iso-b").pw_uid)
    for name, u in users.items():
        assert u["api"].delete(f"/hub/api/users/{name}/server").status_code in (202, 204)
    # the hub first: on a busy machine a stop may still be pending when DELETE answers 202
    deadline = time.monotonic() + 150
    for name, u in users.items():
        while u["api"].get(f"/hub/api/users/{name}").json().get("servers") and time.monotonic() < deadline:
            time.sleep(1)
    left: list[psutil.Process] = []
    while time.monotonic() < deadline:
        left = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in uids]
        if not left:
            return
        time.sleep(0.5)
    hub_view = {name: u["api"].get(f"/hub/api/users/{name}").json().get("servers") for name, u in users.items()}
    sessions = {name: u["api"].get(f"{API}/deployments", params={"kind": "ide"}).json() for name, u in users.items()}
    procs = [{"pid": p.pid, "ppid": p.ppid(), "ticks": start_ticks(p.pid), "cmd": p.cmdline()[1:2],
              "cgroup": Path(f"/proc/{p.pid}/cgroup").read_text().strip()} for p in left]
    db_url = f"sqlite:///{platform.state / 'ai4lab.sqlite'}"
    states = {d.owner: d.backend_state for d in deps.list_deployments(db_url, kind="ide")}
    stops = [line for line in platform.hub_log().splitlines()
             if "iso-a" in line or "iso-b" in line or "signalled" in line][-30:]
    raise AssertionError(f"processes of the users are still running: {procs}; jobs: {states}; "
                         f"hub: {hub_view}; sessions: {sessions}; hub log: {stops}")


@pytest.mark.skipif(not CgroupLimits().enforced, reason="no writable cgroup")
def test_a_session_over_its_memory_is_killed_and_says_why(platform: Platform) -> None:
    platform.add_user("iso-c", "iso-c-password", role="basic")
    token = platform.token("iso-c")
    api = platform.api(token)
    assert api.post("/hub/api/users/iso-c/server", json={**OPTIONS, "ram_gb": 1}).status_code in (201, 202)
    platform.wait_server(token, "iso-c")
    with contextlib.suppress(Exception):  # the kernel dies mid-cell
        execute_in_session(platform.url, "iso-c", token, "b = bytearray(3 * 2**30)", timeout=60)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        sessions = api.get(f"{API}/deployments", params={"kind": "ide"}).json()
        if sessions and sessions[0]["status"] == "failed":
            break
        time.sleep(1)
    assert sessions[0]["status"] == "failed", sessions
    assert "out of memory: limit 1 GB" in sessions[0]["status_reason"], sessions
    assert not api.get("/hub/api/users/iso-c").json()["servers"], "the hub still lists the killed session"
