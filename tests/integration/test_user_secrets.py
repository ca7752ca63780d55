"""Per-user secrets on the shared platform: kept by name, given to the owner's deployments and sessions only.

Two users: ``sela`` keeps secrets and names them in a module server (as
variables), a training (as files) and a JupyterLab session; ``otto`` runs a
module server of his own beside hers, and tries to see, use and delete her
secrets. The values are looked for where they must be (the owner's processes,
read from ``/proc`` as root) and where they must not (the other user's
process, every API answer, the logs, the raw database files).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.integration.test_trainings import upload_digit_dataset
from tests.kernel_client import execute_in_session
from tests.platform_harness import Platform, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"
ENDED = ("succeeded", "failed", "stopped", "cancelled")


class Users:
    def __init__(self, platform: Platform) -> None:
        platform.add_user("sela", "sela-password-1", role="intermediate")
        platform.add_user("sec-otto", "otto-password-1", role="intermediate")
        self.sela_token = platform.token("sela")
        self.otto_token = platform.token("sec-otto")
        self.admin_token = platform.token("admin")
        self.sela = platform.api(self.sela_token)
        self.otto = platform.api(self.otto_token)
        self.admin = platform.api(self.admin_token)
        #: every value stored in this module, by what it is: none may show up where it does not belong
        self.values: dict[str, str] = {}
        self.deployments: list[str] = []

    def new_value(self, what: str) -> str:
        value = f"{what}-{secrets.token_urlsafe(18)}"
        self.values[what] = value
        return value

    def found_in(self, data: str | bytes) -> list[str]:
        raw = data.encode() if isinstance(data, str) else data
        return [what for what, v in self.values.items() if v.encode() in raw]


@pytest.fixture(scope="module")
def users(platform: Platform) -> Iterator[Users]:
    u = Users(platform)
    yield u
    for dep_id in u.deployments:
        for client in (u.sela, u.otto):
            client.delete(f"{API}/deployments/{dep_id}")
    for client in (u.sela, u.otto, u.admin):
        client.close()


def job_process(dep_id: str, kind: str) -> psutil.Process | None:
    """The deployment's main process, found by the job name the local backend marks every process with."""
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("AI4LAB_JOB") == f"{kind}-{dep_id}" and proc.ppid() not in _marked(dep_id, kind):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return None


def _marked(dep_id: str, kind: str) -> set[int]:
    pids = set()
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("AI4LAB_JOB") == f"{kind}-{dep_id}":
                pids.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return pids


def status_of(client: httpx.Client, dep_id: str) -> dict[str, Any]:
    r = client.get(f"{API}/deployments/{dep_id}")
    assert r.status_code == 200, r.text
    return r.json()


def deploy(client: httpx.Client, users: Users, **fields: Any) -> dict[str, Any]:
    r = client.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits", **fields})
    assert r.status_code == 201, r.text
    users.deployments.append(r.json()["id"])
    return r.json()


# -- the API ----------------------------------------------------------------------------------


def test_create_list_replace_delete_without_values(users: Users) -> None:
    value = users.new_value("first")
    r = users.sela.post(f"{API}/secrets", json={"name": "TMP_TOKEN", "value": value})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "TMP_TOKEN" and users.found_in(r.text) == []

    listed = users.sela.get(f"{API}/secrets")
    assert [s["name"] for s in listed.json()] == ["TMP_TOKEN"]
    assert set(listed.json()[0]) == {"name", "created_at", "updated_at"} and users.found_in(listed.text) == []

    # POST does not overwrite; PUT does, and says nothing of the value either
    r = users.sela.post(f"{API}/secrets", json={"name": "TMP_TOKEN", "value": "other"})
    assert r.status_code == 409 and "PUT /secrets/TMP_TOKEN" in r.json()["detail"]
    replaced = users.new_value("replaced")
    r = users.sela.put(f"{API}/secrets/TMP_TOKEN", json={"value": replaced})
    assert r.status_code == 200 and users.found_in(r.text) == []
    r = users.sela.put(f"{API}/secrets/NEW_BY_PUT", json={"value": users.new_value("put")})
    assert r.status_code == 201

    r = users.sela.delete(f"{API}/secrets/TMP_TOKEN")
    assert r.status_code == 200 and r.json() == {"deleted": "TMP_TOKEN"}
    assert users.sela.delete(f"{API}/secrets/TMP_TOKEN").status_code == 404
    assert users.sela.delete(f"{API}/secrets/NEW_BY_PUT").status_code == 200
    assert users.sela.get(f"{API}/secrets").json() == []


def test_bad_requests_are_refused_and_nothing_stored_is_lost(users: Users, platform: Platform) -> None:
    kept = users.new_value("kept")
    assert users.sela.post(f"{API}/secrets", json={"name": "KEPT", "value": kept}).status_code == 201
    for name, reason in [("1BAD", "not an environment variable name"), ("MY-TOKEN", "not an environment variable"),
                         ("PATH", "the platform sets itself"), ("AI4LAB_API_TOKEN", "the platform sets itself"),
                         ("X" * 65, "longer than 64")]:
        r = users.sela.post(f"{API}/secrets", json={"name": name, "value": "v"})
        assert (r.status_code, reason in r.json()["detail"]) == (400, True), r.text
        r = users.sela.put(f"{API}/secrets/{name}", json={"value": "v"})
        assert (r.status_code, reason in r.json()["detail"]) == (400, True), r.text
    r = users.sela.put(f"{API}/secrets/KEPT", json={"value": ""})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = users.sela.put(f"{API}/secrets/KEPT", json={"value": "x" * 70000})
    assert r.status_code == 413
    r = users.sela.post(f"{API}/secrets", json={"name": "KEPT2", "value": "v", "shown": True})
    assert r.status_code == 422 and "shown" in r.text
    assert [s["name"] for s in users.sela.get(f"{API}/secrets").json()] == ["KEPT"]
    # the value is still the first one: a module asking for it is the proof (checked below), and the
    # anonymous are refused everything
    assert httpx.get(f"{platform.url}{API}/secrets", timeout=10).status_code in (401, 403)
    assert users.sela.delete(f"{API}/secrets/KEPT").status_code == 200


def test_another_user_cannot_list_use_or_delete(users: Users) -> None:
    value = users.new_value("selas-own")
    assert users.sela.post(f"{API}/secrets", json={"name": "SELAS_OWN", "value": value}).status_code == 201
    assert "SELAS_OWN" not in users.otto.get(f"{API}/secrets").text
    assert "SELAS_OWN" not in users.admin.get(f"{API}/secrets").text  # admins list their own too
    assert users.otto.delete(f"{API}/secrets/SELAS_OWN").status_code == 404
    assert users.admin.delete(f"{API}/secrets/SELAS_OWN").status_code == 404
    r = users.otto.put(f"{API}/secrets/SELAS_OWN", json={"value": "ottos"})  # his own, of the same name
    assert r.status_code == 201
    # naming a secret he does not have: refused before anything starts
    r = users.otto.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits",
                                                   "secrets": ["NOT_HIS"]})
    assert r.status_code == 400 and "no secret 'NOT_HIS' of yours" in r.json()["detail"]
    r = users.otto.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-flower", "secrets": ["NOT_HIS"],
                                                   "config": {"rounds": 1}})
    assert r.status_code == 400 and "NOT_HIS" in r.json()["detail"]
    r = users.otto.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits",
                                                   "secrets": ["BAD-NAME"], "secrets_as": "argv"})
    assert r.status_code == 422
    assert users.otto.delete(f"{API}/secrets/SELAS_OWN").status_code == 200
    assert [s["name"] for s in users.sela.get(f"{API}/secrets").json()] == ["SELAS_OWN"]


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_set_ls_rm(users: Users, platform: Platform) -> None:
    remote = ["--url", f"{platform.url}{API}", "--token", users.sela_token]
    value = users.new_value("cli")
    r = platform.cli("secrets", "set", "CLI_TOKEN", *remote, input=value + "\n")  # from standard input
    assert r.stdout.strip() == "CLI_TOKEN stored" and users.found_in(r.stdout + r.stderr) == []
    listing = platform.cli("secrets", "ls", *remote).stdout
    assert "CLI_TOKEN" in listing and "SELAS_OWN" in listing and users.found_in(listing) == []

    r = platform.cli("secrets", "set", "CLI_TOKEN", *remote, input="other", check=False)
    assert r.returncode == 1 and "--replace" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = platform.cli("secrets", "set", "CLI-TOKEN", *remote, input="v", check=False)
    assert r.returncode == 2 and "not an environment variable name" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    replaced = users.new_value("cli-replaced")
    platform.cli("secrets", "set", "CLI_TOKEN", "--replace", *remote, input=replaced)

    r = platform.cli("secrets", "rm", "CLI_TOKEN", *remote)
    assert r.stdout.strip() == "CLI_TOKEN deleted"
    assert "CLI_TOKEN" not in users.sela.get(f"{API}/secrets").text


# -- deployments ------------------------------------------------------------------------------


def test_module_server_gets_the_secret_in_its_environment_only(users: Users, platform: Platform) -> None:
    value = users.new_value("hf")
    assert users.sela.post(f"{API}/secrets", json={"name": "HF_TOKEN", "value": value}).status_code == 201
    mine = deploy(users.sela, users, title="with a secret", secrets=["HF_TOKEN"])
    assert mine["spec"]["secrets"] == ["HF_TOKEN"] and mine["spec"]["secrets_as"] == "env"
    theirs = deploy(users.otto, users, title="without")
    for client, dep in ((users.sela, mine), (users.otto, theirs)):
        wait_until(lambda c=client, d=dep: status_of(c, d["id"])["status"] in ("running", *ENDED), 240,
                   "the module server did not start")
        assert status_of(client, dep["id"])["status"] == "running", status_of(client, dep["id"])["status_reason"]

    proc = job_process(mine["id"], "module")
    assert proc is not None
    env = proc.environ()  # /proc/<pid>/environ, read as root
    assert env["HF_TOKEN"] == value
    assert value not in " ".join(proc.cmdline())  # never in argv (what `ps` shows everyone)
    owner = pwd.getpwuid(proc.uids().real).pw_name
    environ = Path(f"/proc/{proc.pid}/environ")
    assert stat.S_IMODE(environ.stat().st_mode) == 0o400 and environ.stat().st_uid == proc.uids().real
    other = job_process(theirs["id"], "module")
    assert other is not None and other.uids().real != proc.uids().real, owner
    assert users.found_in("\n".join(f"{k}={v}" for k, v in other.environ().items())) == []

    # the records and the listings name the secret, never its value
    answers = [users.sela.get(f"{API}/deployments/{mine['id']}"), users.sela.get(f"{API}/deployments"),
               users.admin.get(f"{API}/deployments", params={"all": "true"}),
               users.admin.get(f"{API}/admin/usage"), users.sela.get(f"{API}/deployments/{mine['id']}/logs")]
    assert [r.status_code for r in answers] == [200] * len(answers)
    assert [users.found_in(r.text) for r in answers] == [[]] * len(answers)

    # the other user cannot see it, nor stop it
    assert users.otto.get(f"{API}/deployments/{mine['id']}").status_code == 404
    for dep in (mine, theirs):
        (users.sela if dep is mine else users.otto).delete(f"{API}/deployments/{dep['id']}")


def test_training_gets_the_secret_as_a_private_file_removed_at_its_end(
    users: Users, platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> None:
    value = users.new_value("s3")
    assert users.sela.put(f"{API}/secrets/S3_SECRET_KEY", json={"value": value}).status_code == 201
    upload_digit_dataset(users.sela, tmp_path_factory.mktemp("sela-digits"), n=60, folder="datasets/sela")
    r = users.sela.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits",
                                                   "dataset": "datasets/sela", "args": {"epochs": 10},
                                                   "secrets": ["S3_SECRET_KEY"], "secrets_as": "files"})
    assert r.status_code == 201, r.text
    dep_id = r.json()["id"]
    users.deployments.append(dep_id)
    proc = wait_until(lambda: job_process(dep_id, "training"), 180, "the training did not start")
    env = proc.environ()
    assert "S3_SECRET_KEY" not in env  # files, not variables
    folder = Path(env["AI4LAB_SECRETS_DIR"])
    file = folder / "S3_SECRET_KEY"
    assert file.read_text() == value
    uid = proc.uids().real
    assert (folder.stat().st_uid, stat.S_IMODE(folder.stat().st_mode)) == (uid, 0o700)
    assert (file.stat().st_uid, stat.S_IMODE(file.stat().st_mode)) == (uid, 0o600)
    assert uid != os.getuid(), "the training runs as sela's own account"

    # a batch job queued behind it (the quota runs one job at a time) names a secret deleted while it waits:
    # the value is read when it starts, so it fails saying why, and nothing of the old value reaches it
    assert users.sela.put(f"{API}/secrets/GONE_SOON", json={"value": users.new_value("gone")}).status_code == 201
    r = users.sela.post(f"{API}/deployments", json={"kind": "batch", "item": "ai4lab-digits", "input": "datasets/sela",
                                                   "output": "outputs/gone", "secrets": ["GONE_SOON"]})
    assert r.status_code == 201, r.text
    batch_id = r.json()["id"]
    users.deployments.append(batch_id)
    assert status_of(users.sela, batch_id)["status"] == "queued"
    assert users.sela.delete(f"{API}/secrets/GONE_SOON").status_code == 200

    done = wait_until(lambda: (d := status_of(users.sela, dep_id))["status"] in ENDED and d, 300,
                      "the training did not end")
    assert done["status"] == "succeeded", done["status_reason"]
    assert not folder.exists(), "the secrets folder outlived the training"
    batch = wait_until(lambda: (d := status_of(users.sela, batch_id))["status"] in ENDED and d, 120,
                       "the batch job did not end")
    assert batch["status"] == "failed" and "'GONE_SOON' was deleted" in batch["status_reason"], batch
    r = users.sela.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits",
                                                   "secrets": ["GONE_SOON"]})
    assert r.status_code == 400 and "GONE_SOON" in r.json()["detail"]




# -- sessions ---------------------------------------------------------------------------------


def test_session_kernel_sees_the_secret(users: Users, platform: Platform) -> None:
    value = users.values["hf"]
    r = users.sela.post("/hub/api/users/sela/servers/vault", json={"secrets": ["NOT_MINE"]})
    assert r.status_code == 400 and "NOT_MINE" in r.text
    r = users.sela.post("/hub/api/users/sela/servers/vault", json={"secrets": ["HF_TOKEN"], "secrets_as": "env"})
    assert r.status_code in (201, 202), r.text
    try:
        srv = platform.wait_server(users.sela_token, "sela", "vault")
        assert srv["user_options"]["secrets"] == ["HF_TOKEN"]
        # the kernel compares, and prints only a digest: the value is written nowhere
        code = (
            "import hashlib, os\n"
            "v = os.environ.get('HF_TOKEN', '')\n"
            "print('DIGEST', hashlib.sha256(v.encode()).hexdigest(), 'USER', os.environ.get('USER'))\n"
        )
        output = execute_in_session(platform.url, "sela/vault", users.sela_token, code)
        assert f"DIGEST {hashlib.sha256(value.encode()).hexdigest()} USER sela" in output
        sessions = [d for d in users.sela.get(f"{API}/deployments", params={"kind": "ide"}).json()
                    if d["name"] == "vault"]
        assert sessions and sessions[0]["spec"]["secrets"] == ["HF_TOKEN"]
        assert users.found_in(users.sela.get(f"{API}/deployments/{sessions[0]['id']}").text) == []
    finally:
        users.sela.delete("/hub/api/users/sela/servers/vault")


# -- nowhere else -----------------------------------------------------------------------------


def test_no_value_in_the_database_files_or_the_logs(users: Users, platform: Platform) -> None:
    assert len(users.values) >= 8
    raw = b"".join(p.read_bytes() for p in platform.state.glob("ai4lab.sqlite*"))
    assert b"user_secrets" in raw or b"HF_TOKEN" in raw
    assert users.found_in(raw) == []
    hub_db = b"".join(p.read_bytes() for p in platform.state.glob("jupyterhub.sqlite*"))
    assert users.found_in(hub_db) == []
    logs = [p for p in (platform.state / "logs").rglob("*") if p.is_file()]
    leaks = {p.name: found for p in logs if (found := users.found_in(p.read_bytes()))}
    assert leaks == {}
