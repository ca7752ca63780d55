"""A real platform (hub, proxy, API) with spawner and backend ``nomad``, against the spec-checking fake Nomad.

The fake's exec driver really runs the IDE job's command (``jupyterhub-singleuser``)
as a local process, as Nomad's raw_exec would, so the server URL taken from the
allocation must answer through the hub's proxy. Module images cannot run here:
those jobs are simulated (running, then ended by the test).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.nomad import FakeNode, FakeNomad, FakeNomadServer
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("nomad_platform")]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "nomad-acl-token"
API = "/services/ai4lab"


@pytest.fixture(scope="module")
def nomad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeNomadServer]:
    conf = tmp_path_factory.mktemp("jupyter-config")  # what the IDE image would carry
    (conf / "jupyter_server_config.py").write_text("c.ServerApp.allow_root = True\n")
    nodes = [
        FakeNode("cpu1", datacenter="ifca", pool="default", address="127.0.0.1"),
        FakeNode("gpu1", datacenter="ifca", pool="gpu", gpus={"Tesla T4": 1}, memory_mb=6000, address="127.0.0.1"),
        FakeNode("a100", datacenter="psnc", pool="imagine", gpus={"NVIDIA A100": 1}, address="127.0.0.1"),
    ]
    fake = FakeNomad(nodes, token=TOKEN, driver="exec",
                     exec_env={"JUPYTER_CONFIG_DIR": str(conf), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
                     exec_if=lambda job: job["Meta"]["kind"] == "ide")
    with FakeNomadServer(fake) as server:
        yield server


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, nomad: FakeNomadServer) -> Iterator[Platform]:
    p = Platform.create(
        Path(tmp_path_factory.mktemp("nomad-platform")) / "state",
        spawner="nomad", backend="nomad", nomad__address=nomad.address, nomad__token=TOKEN,
        nomad__federation_file=str(ROOT / "config" / "nomad" / "federation.example.yaml"),
    )
    p.start()
    try:
        p.add_user("alice", "alice-password", role="intermediate")
        p.cli("users", "add", "bob", "--role", "intermediate", "--password", "bob-password", "--vo", "ai4eosc")
        p.cli("users", "add", "carol", "--role", "advanced", "--password", "carol-password", "--vo", "imagine")
        yield p
    finally:
        if p.proc and p.proc.poll() is None:
            p.stop()


@pytest.fixture(scope="module")
def tokens(platform: Platform) -> dict[str, str]:
    return {u: platform.token(u) for u in ("alice", "bob", "carol", "admin")}


def progress_events(platform: Platform, token: str, user: str, timeout: float = 120) -> list[dict[str, Any]]:
    """The hub's progress stream of a user's default server, until it ends (``token``: one with read:servers)."""
    events = []
    with httpx.stream("GET", f"{platform.url}/hub/api/users/{user}/server/progress",
                      headers={"Authorization": f"token {token}"}, timeout=timeout) as r:
        assert r.status_code == 200, (r.status_code, r.read())
        for line in r.iter_lines():
            if line.startswith("data:"):
                ev = json.loads(line[5:])
                events.append(ev)
                if ev.get("ready") or ev.get("failed"):
                    break
    return events


def job_of(fake: FakeNomad, **meta: str) -> dict[str, Any]:
    return next(j for j in fake.jobs.values() if all(j["Meta"].get(k) == v for k, v in meta.items()))


def test_gpu_session_on_nomad(platform: Platform, nomad: FakeNomadServer, tokens: dict[str, str]) -> None:
    fake = nomad.fake
    with closing(platform.login("bob", "bob-password")) as client:  # the form: the project's GPUs, with what is free
        page = client.get("/hub/spawn").text
    assert 'name="gpu_model"' in page and "Tesla T4 (1 of 1 free)" in page and "NVIDIA A100" not in page
    with platform.api(tokens["bob"]) as api:
        # the hub answers the POST once the server is up (within slow_spawn_timeout): follow progress meanwhile
        with ThreadPoolExecutor(1) as pool:
            posted = pool.submit(api.post, "/hub/api/users/bob/server",
                                 json={"profile": "gpu", "gpu_model": "Tesla T4", "ram_gb": 4,
                                       "environment": "pytorch"})
            fake.wait_for(lambda: any(j["Meta"]["owner"] == "bob" for j in fake.jobs.values()), timeout=30)
            events = progress_events(platform, tokens["admin"], "bob")
            r = posted.result()
        assert r.status_code in (201, 202), r.text
        messages = [e["message"] for e in events]
        assert events[-1].get("ready"), messages
        assert any(m.startswith("Nomad job bob-ide-default registered") for m in messages)
        # the environment chose the image: PyTorch's GPU image (images/ide)
        assert "main: Driver: Downloading image ghcr.io/ai4lab/ide-pytorch:0.1.0-gpu" in messages
        assert "main: Started: Task started by client" in messages
        job = job_of(fake, owner="bob", kind="ide")
        assert job["Meta"]["project"] == "ai4eosc" and job["Datacenters"] == ["ifca"]
        main = job["TaskGroups"][0]["Tasks"][-1]
        assert main["Resources"]["Devices"][0] == {"Name": "nvidia/gpu", "Count": 1, "Constraints": [
            {"LTarget": "${device.model}", "Operand": "=", "RTarget": "Tesla T4"}]}
        alloc = fake.alloc_of(job["ID"])
        assert alloc["NodeName"] == "gpu1" and alloc["ClientStatus"] == "running"
        port = alloc["AllocatedResources"]["Shared"]["Ports"][0]["Value"]
        assert any(m.endswith(f"Server answering at http://127.0.0.1:{port}") for m in messages)
        # through the proxy, to the process the allocation runs
        assert api.get("/user/bob/api/status").status_code == 200
        dep = next(d for d in api.get(f"{API}/deployments", params={"kind": "ide"}).json())
        assert dep["backend"] == "nomad" and dep["status"] == "running"
        # its logs come from the Nomad job, the server's own (they once fell through to the local backend, empty)
        assert "ServerApp" in api.get(f"{API}/deployments/{dep['id']}/logs").text
        r = api.delete("/hub/api/users/bob/server")
        assert r.status_code in (202, 204)
        deadline = time.monotonic() + 60
        while api.get("/hub/api/users/bob").json()["servers"] and time.monotonic() < deadline:
            time.sleep(0.3)
    assert ("DELETE", f"/v1/job/{job['ID']}", {"namespace": "default", "purge": "true"}) in \
        [(m, p, {k: v for k, v in q.items() if k != "region"}) for m, p, q in fake.requests]
    assert job["ID"] not in {j["ID"] for j in fake.jobs.values()} and not fake.procs


def test_session_that_cannot_be_placed_fails_with_nomad_reason(
        platform: Platform, nomad: FakeNomadServer, tokens: dict[str, str]) -> None:
    # the T4 is free, but its node has 6000 MB: 8 GB cannot be placed anywhere
    with platform.api(tokens["bob"]) as api:
        r = api.post("/hub/api/users/bob/server", json={"profile": "gpu", "ram_gb": 8})
        if r.status_code == 500:  # failed within the hub's slow_spawn_timeout: the answer says why
            msg = r.json()["message"]
        else:
            assert r.status_code == 202, r.text
            events = progress_events(platform, tokens["admin"], "bob")
            assert events[-1].get("failed")
            msg = events[-1]["message"]
        assert "Nomad cannot place this session: no node can run it" in msg
        assert "exhausted (memory)" in msg and "exhausted (no free 1 GPU(s))" in msg
        dep = next(d for d in api.get(f"{API}/deployments", params={"kind": "ide"}).json())
        assert dep["status"] == "failed" and "cannot place" in dep["status_reason"]
    assert not any(j["Meta"]["owner"] == "bob" and not j["Stop"] for j in nomad.fake.jobs.values())


def test_deploy_form_offers_the_projects_datacenters(platform: Platform, tokens: dict[str, str]) -> None:
    with platform.api(tokens["bob"]) as api:
        form = api.get(f"{API}/catalog/modules/ai4lab-digits/config").json()
    assert form["general"]["backend"]["options"] == ["nomad"]
    assert form["hardware"]["datacenter"]["options"] == ["", "ifca"]
    assert set(form["capacity"]) == {"ifca"}
    assert form["capacity"]["ifca"]["gpus"]["Tesla T4"]["free"] == 1
    assert form["hardware"]["gpu_type"]["options"] == ["", "Tesla T4"]
    with platform.api(tokens["carol"]) as api:
        form = api.get(f"{API}/catalog/modules/ai4lab-digits/config").json()
    assert form["hardware"]["datacenter"]["options"] == ["", "ifca", "psnc"]
    assert form["hardware"]["gpu_type"]["options"] == ["", "NVIDIA A100"]  # imagine's models only
    with platform.api(tokens["bob"]) as api:
        r = api.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits",
                                                 "hardware": {"datacenter": "psnc"}})
    assert r.status_code == 400 and "datacenter='psnc' is not one of ['', 'ifca']" in r.json()["detail"]


def wait_status(api: httpx.Client, dep_id: str, *statuses: str, timeout: float = 30, reason: str = "") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = api.get(f"{API}/deployments/{dep_id}").json()
        if dep["status"] in statuses and reason in dep["status_reason"]:
            return dep
        time.sleep(0.2)
    raise AssertionError(f"deployment {dep_id} stayed {dep['status']}: {dep['status_reason']}")


STORAGE = {"type": "webdav", "url": "https://share.example.org/remote.php/dav/files/bob", "user": "bob",
           "password": "webdav-app-password"}


def test_cvat_tool_on_nomad(platform: Platform, nomad: FakeNomadServer, tokens: dict[str, str]) -> None:
    from tests.fakes.cvat import FakeCvat, FakeCvatServer
    from tests.nomad.test_cvat_export import COCO

    fake = nomad.fake
    with platform.api(tokens["bob"]) as api:
        r = api.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-cvat"})
        assert r.status_code == 400 and "give config.storage" in r.json()["detail"]
        r = api.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-cvat",
                                                 "config": {"storage": {"type": "ftp", "url": "x"}}})
        assert r.status_code == 400 and "config.storage: type:" in r.json()["detail"]
        r = api.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-cvat", "title": "annotate cats",
                                                 "config": {"storage": STORAGE}})
        assert r.status_code == 201, r.text
        dep = wait_status(api, r.json()["id"], "running")
        job = job_of(fake, deployment=dep["id"])
        assert job["Meta"]["tool"] == "cvat" and job["Meta"]["project"] == "ai4eosc"
        assert [t["Name"] for t in job["TaskGroups"][0]["Tasks"]][-4:] == ["db", "cache", "main", "ui"]
        password = next(t for t in job["TaskGroups"][0]["Tasks"] if t["Name"] == "main")["Env"][
            "DJANGO_SUPERUSER_PASSWORD"]
        ui_port = next(p["Value"] for p in fake.alloc_of(job["ID"])["AllocatedResources"]["Shared"]["Ports"]
                       if p["Label"] == "ui")
        assert dep["endpoints"]["ui"] == f"http://127.0.0.1:{ui_port}"
        listed = api.get(f"{API}/deployments", params={"kind": "tool"}).text
        assert password not in listed and password not in json.dumps(dep) and "webdav-app-password" not in listed
        access = api.get(f"{API}/deployments/{dep['id']}/cvat").json()
        assert access == {"url": f"http://127.0.0.1:{ui_port}", "username": "admin", "password": password,
                          "status": "running"}
        with platform.api(tokens["alice"]) as other:  # not alice's: 404, the password included
            assert other.get(f"{API}/deployments/{dep['id']}/cvat").status_code == 404
            assert other.post(f"{API}/deployments/{dep['id']}/cvat/export", json={"task_id": 7}).status_code == 404
        with platform.api(tokens["admin"]) as admin:
            assert admin.get(f"{API}/deployments/{dep['id']}/cvat").json()["password"] == password
            usage = admin.get(f"{API}/admin/usage").text
            assert dep["id"] in usage and password not in usage and "webdav-app-password" not in usage
        # sealed in the database: neither the row nor the raw files hold the password or the storage's
        raw = b"".join(p.read_bytes() for p in platform.state.glob("ai4lab.sqlite*"))
        assert password.encode() not in raw and b"webdav-app-password" not in raw
        with sqlite3.connect(platform.state / "ai4lab.sqlite") as conn:
            (state,) = conn.execute("SELECT backend_state FROM deployments WHERE id = ?", (dep["id"],)).fetchone()
        assert json.loads(state)["cvat_password"].startswith("fernet:")

        # CVAT answering at the address Nomad allocated (the fake CVAT, with this deployment's admin password)
        cvat = FakeCvat("admin", password)
        cvat.add_task(7, "Cats in the garden", ["cat"], COCO)
        with FakeCvatServer(cvat, port=ui_port):
            r = api.post(f"{API}/deployments/{dep['id']}/cvat/export", json={"task_id": 7, "name": "cats"})
            assert r.status_code == 201, r.text
            assert r.json()["dataset"] == "datasets/cats"
            assert "annotations/instances_default.json" in r.json()["files"]
            assert api.get(f"{API}/storage/datasets/cats/annotations/instances_default.json").json() == COCO
            r = api.post(f"{API}/deployments/{dep['id']}/cvat/export", json={"task_id": 7, "name": "cats"})
            assert r.status_code == 400 and "already exists" in r.json()["detail"]
            r = api.post(f"{API}/deployments/{dep['id']}/cvat/export", json={"task_id": 7, "name": "../x"})
            assert r.status_code == 400
            # datasets/ replaced by a link out of the storage (as bob's session could): refused, nothing written
            storage = platform.state / "storage" / "bob"
            elsewhere = platform.state / "not-bobs"
            elsewhere.mkdir()
            (storage / "datasets").rename(storage / "datasets-before")
            (storage / "datasets").symlink_to(elsewhere)
            r = api.post(f"{API}/deployments/{dep['id']}/cvat/export", json={"task_id": 7, "name": "planted"})
            assert r.status_code == 400, r.text
            assert r.json()["detail"] == "'datasets/planted' leaves your storage through a symlink"
            assert list(elsewhere.iterdir()) == []
            (storage / "datasets").unlink()
            (storage / "datasets-before").rename(storage / "datasets")
        logs = "".join(f.read_text(errors="replace") for f in (platform.state / "logs").rglob("*.log"))
        assert logs  # the hub's and the API's logs, with the requests above
        assert password not in logs and password not in api.get(f"{API}/deployments/{dep['id']}/logs").text

        assert api.delete(f"{API}/deployments/{dep['id']}").json()["status"] == "stopped"
        r = api.post(f"{API}/deployments/{dep['id']}/cvat/export", json={"task_id": 7})
        assert r.status_code == 409
    assert job["ID"] not in {j["ID"] for j in fake.jobs.values()}


@contextmanager
def deepaas_at(port: int, body: bytes, content_type: str) -> Iterator[list[str]]:
    """A stand-in for a module image's DEEPaaS at an allocation's port (images cannot run here): it answers
    every request with ``body`` and records the paths asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            asked.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()


def test_nomad_modules_in_a_pipeline_and_ended_ones_not_proxied(platform: Platform, nomad: FakeNomadServer,
                                                                tokens: dict[str, str]) -> None:
    """A pipeline calls Nomad modules where their allocation serves them (it once asked for a local port and
    failed with a 500); a module Nomad ended is no longer proxied (it once stayed in the proxy's memory)."""
    fake = nomad.fake
    png = (ROOT / "docs" / "screenshots" / "lab-marketplace.png").read_bytes()[:2048]
    with platform.api(tokens["bob"]) as api:
        deps_, ports = {}, {}
        for item in ("ai4lab-image-prep", "ai4lab-digits"):
            r = api.post(f"{API}/deployments", json={"kind": "module", "item": item, "hardware": {"cpu_num": 1}})
            assert r.status_code == 201, r.text
            deps_[item] = wait_status(api, r.json()["id"], "running")
            job = job_of(fake, deployment=deps_[item]["id"])
            ports[item] = fake.alloc_of(job["ID"])["AllocatedResources"]["Shared"]["Ports"][0]["Value"]
        prep, digits = deps_["ai4lab-image-prep"], deps_["ai4lab-digits"]
        with deepaas_at(ports["ai4lab-image-prep"], png, "image/png") as prep_asked, \
                deepaas_at(ports["ai4lab-digits"], b'{"predictions": {"label": 3}}', "application/json") as asked:
            r = api.post(f"{API}/deployments", json={"kind": "pipeline", "steps": [
                {"deployment": prep["id"], "output": "file"}, {"deployment": digits["id"]}]})
            assert r.status_code == 201, r.text
            pipe = r.json()
            r = api.post(f"{API}/deployments/{pipe['id']}/predict", files={"file": ("x.png", png, "image/png")})
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == {"label": 3}
            assert prep_asked == [f"POST /v2/models/{prep['spec']['entry_point']}/predict/"]
            assert asked[0].startswith(f"POST /v2/models/{digits['spec']['entry_point']}/predict/")
            # the module's own API, proxied while it runs
            assert api.get(f"{API}/deployments/{digits['id']}/api/v2/models/").status_code == 200
            assert asked[-1] == "GET /v2/models/"
            # Nomad ends it: the platform follows, and the proxy refuses
            fake.finish(job_of(fake, deployment=digits["id"])["ID"], 1)
            wait_status(api, digits["id"], "failed")
            r = api.get(f"{API}/deployments/{digits['id']}/api/v2/models/")
            assert r.status_code == 409 and "is failed" in r.json()["detail"]
            assert asked[-1] == "GET /v2/models/" and len([a for a in asked if a.startswith("GET")]) == 1
        api.delete(f"{API}/deployments/{prep['id']}")


def test_module_and_training_deployments_on_nomad(platform: Platform, nomad: FakeNomadServer,
                                                  tokens: dict[str, str]) -> None:
    fake = nomad.fake
    with platform.api(tokens["bob"]) as api:
        r = api.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits", "title": "digits on nomad",
                                                 "hardware": {"cpu_num": 1, "ram": 2000}})
        assert r.status_code == 201, r.text
        mod = wait_status(api, r.json()["id"], "running")
        job = job_of(fake, deployment=mod["id"])
        assert job["TaskGroups"][0]["Tasks"][-1]["Config"]["image"] == "ai4lab/ai4lab-digits:latest"
        port = fake.alloc_of(job["ID"])["AllocatedResources"]["Shared"]["Ports"][0]["Value"]
        assert mod["endpoints"] == {"api": f"http://127.0.0.1:{port}"}
        fake.set_logs(job["ID"], "deepaas started\n")
        assert api.get(f"{API}/deployments/{mod['id']}/logs").text == "deepaas started\n"
        # alice cannot see bob's deployment
        with platform.api(tokens["alice"]) as other:
            assert other.get(f"{API}/deployments/{mod['id']}").status_code == 404

        # a training the scheduler cannot place: queued, with Nomad's reason
        r = api.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits",
                                                 "args": {"epochs": 2},
                                                 "hardware": {"gpu_num": 1, "ram": 8000}})
        assert r.status_code == 201, r.text
        big = wait_status(api, r.json()["id"], "queued", reason="pending: not placed yet")
        assert "no node can run it" in big["status_reason"] and "exhausted (memory)" in big["status_reason"]
        assert api.delete(f"{API}/deployments/{big['id']}").json()["status"] == "stopped"

        # a training that runs and completes
        r = api.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits",
                                                 "args": {"epochs": 2}, "hardware": {"ram": 2000}})
        train = wait_status(api, r.json()["id"], "running")
        tjob = job_of(fake, deployment=train["id"])
        assert tjob["Type"] == "batch"
        assert tjob["TaskGroups"][0]["Tasks"][-1]["Config"]["args"] == ["train", "--epochs", "2"]
        fake.finish(tjob["ID"], 0)
        assert wait_status(api, train["id"], "succeeded")["status_reason"] == "completed"

        # node loss: rescheduled once on the other node, then nowhere left -> failed with the reason
        node = fake.alloc_of(job["ID"])["NodeName"]
        fake.lose_node(node)
        fake.wait_running(job["ID"])
        assert fake.alloc_of(job["ID"])["NodeName"] != node
        assert wait_status(api, mod["id"], "running")["status"] == "running"
        other = fake.alloc_of(job["ID"])["NodeName"]
        fake.lose_node(other)
        failed = wait_status(api, mod["id"], "failed")
        assert failed["status_reason"].startswith(f"lost: alloc is lost since its node {other} is down; "
                                                  "not rescheduled: no node can run it")
