"""Log scan: after a realistic mix on the shared platform, no secret is in a log, a listing, or the database in clear.

The mix: logins through the hub's form (admin and a user), a user token, a
password change, a training of ai4lab-digits to the end, a Flower server with
its owner-only token endpoint (shown, rotated) and its stop. The secrets are
every value of ``secrets.json``, the admin password, the user's passwords, the
tokens created (the user's, the processes' MLflow tokens, both Flower tokens)
and the key that seals tool secrets. Each is looked for in every file under
``logs/`` (whatever any test of the shared platform wrote there), in the API's
listings, in the raw database files, and in the deployment processes' environment.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import stat
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.test_process_tokens import process_env
from tests.integration.test_trainings import upload_digit_dataset
from tests.platform_harness import Platform, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"


@dataclass
class Run:
    secrets: dict[str, str] = field(default_factory=dict)  # what it is -> value
    training: dict[str, Any] = field(default_factory=dict)
    flower: dict[str, Any] = field(default_factory=dict)
    process_envs: dict[str, dict[str, str]] = field(default_factory=dict)
    user_token: str = ""
    admin_token: str = ""

    def found_in(self, text: str | bytes) -> list[str]:
        data = text.encode() if isinstance(text, str) else text
        return [what for what, value in self.secrets.items() if value.encode() in data]


@pytest.fixture(scope="module")
def run(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = Run()
    assert platform.admin_password, "the shared platform was started fresh: its admin password was printed"
    out.secrets["admin password"] = platform.admin_password
    for key, value in json.loads((platform.state / "secrets.json").read_text()).items():
        out.secrets[f"secrets.json {key}"] = value

    # logins through the hub's form, and the admin's pages through OAuth
    with closing(platform.login("admin", platform.admin_password)) as browser:
        assert browser.get("/hub/home").status_code == 200
        page = browser.get(f"{API}/admin", headers={"Accept": "text/html"})  # through the hub's OAuth
        assert page.status_code == 200 and "Platform admin" in page.text, page.text[:300]
    first = f"lena-{secrets.token_urlsafe(9)}"
    platform.add_user("lena", first, role="intermediate")
    out.secrets["lena's first password"] = first
    with closing(platform.login("lena", first)) as browser:
        assert browser.get("/hub/home").status_code == 200
    second = f"lena-{secrets.token_urlsafe(9)}"
    platform.cli("users", "password", "lena", "--password", second)
    out.secrets["lena's second password"] = second
    with closing(platform.login("lena", second)) as browser:
        assert browser.get(f"{API}/marketplace", headers={"Accept": "text/html"}).status_code == 200
    out.user_token = platform.token("lena")
    out.secrets["lena's API token"] = out.user_token
    out.admin_token = platform.token("admin")
    out.secrets["admin's API token"] = out.admin_token

    with platform.api(out.user_token) as lena:
        # a training of ai4lab-digits, to the end
        upload_digit_dataset(lena, tmp_path_factory.mktemp("lena-digits"), n=100, folder="datasets/lena")
        r = lena.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits",
                                                  "dataset": "datasets/lena", "args": {"epochs": 10}})
        assert r.status_code == 201, r.text
        train_id = r.json()["id"]
        env = wait_until(lambda: process_env(platform, train_id), 120, "the training did not start")
        out.process_envs["training"] = env
        out.secrets["the training's MLflow token"] = env["MLFLOW_TRACKING_TOKEN"]
        out.training = wait_until(lambda: (d := lena.get(f"{API}/deployments/{train_id}").json())["status"]
                                  not in ("queued", "starting", "running") and d, 300, "the training did not end")
        assert out.training["status"] == "succeeded", out.training["status_reason"]
        assert lena.get(f"{API}/deployments/{train_id}/logs").status_code == 200

        # a Flower server: the owner-only token endpoint, a rotation, the panel, then stop
        r = lena.post(f"{API}/deployments", json={"kind": "tool", "item": "ai4lab-flower", "title": "log scan",
                                                  "config": {"rounds": 1, "min_fit_clients": 2,
                                                             "min_available_clients": 2}})
        assert r.status_code == 201, r.text
        flower_id = r.json()["id"]
        wait_until(lambda: lena.get(f"{API}/deployments/{flower_id}").json()["status"] == "running", 300,
                   "the Flower server did not start")
        shown = lena.get(f"{API}/deployments/{flower_id}/flower/token").json()
        assert shown["token"] and shown["token"] in shown["snippet"]
        out.secrets["the first Flower token"] = shown["token"]
        rotated = lena.post(f"{API}/deployments/{flower_id}/flower/token").json()
        assert rotated["token"] != shown["token"]
        out.secrets["the rotated Flower token"] = rotated["token"]
        assert lena.get(f"{API}/deployments/{flower_id}/flower").json()["address"]
        env = process_env(platform, flower_id)
        out.process_envs["Flower server"] = env
        out.secrets["the Flower server's MLflow token"] = env["MLFLOW_TRACKING_TOKEN"]
        lena.get(f"{API}/deployments/{flower_id}/logs")
        out.flower = lena.delete(f"{API}/deployments/{flower_id}").json()
        assert out.flower["status"] == "stopped"

    key = platform.state / "secret-box.key"
    assert key.is_file(), "the Flower token was sealed: the key exists"
    out.secrets["the secret-box key"] = key.read_text().strip()
    time.sleep(1.5)  # one more turn of the watch loops, which log what they do
    return out


def test_no_secret_in_any_log_file(platform: Platform, run: Run) -> None:
    files = [p for p in (platform.state / "logs").rglob("*") if p.is_file()]
    names = {p.relative_to(platform.state / "logs").as_posix() for p in files}
    # the logs that the mix wrote to: hub (with proxy), API, MLflow, both deployments
    assert {"hub.log", f"deployments/{run.training['id']}.log", f"deployments/{run.flower['id']}.log"} <= names
    assert sum(p.stat().st_size for p in files) > 10_000
    leaks = {p.relative_to(platform.state).as_posix(): found for p in files if (found := run.found_in(p.read_bytes()))}
    assert leaks == {}


def test_no_secret_in_api_listings(platform: Platform, run: Run) -> None:
    with platform.api(run.user_token) as lena, platform.api(run.admin_token) as admin:
        answers = {
            "GET /deployments": lena.get(f"{API}/deployments"),
            "GET /deployments?kind=tool": lena.get(f"{API}/deployments", params={"kind": "tool"}),
            "GET /deployments/{training}": lena.get(f"{API}/deployments/{run.training['id']}"),
            "GET /deployments/{flower}": lena.get(f"{API}/deployments/{run.flower['id']}"),
            "GET /deployments/{flower}/flower": lena.get(f"{API}/deployments/{run.flower['id']}/flower"),
            "GET /me": lena.get(f"{API}/me"),
            "admin GET /deployments?all=true": admin.get(f"{API}/deployments", params={"all": "true"}),
            "admin GET /admin/usage": admin.get(f"{API}/admin/usage"),
            "admin GET /admin?status=all": admin.get(f"{API}/admin", params={"status": "all"}),
            "admin GET /users": admin.get(f"{API}/users"),
            "admin GET /me": admin.get(f"{API}/me"),
        }
    assert {what: r.status_code for what, r in answers.items()} == dict.fromkeys(answers, 200)
    assert run.flower["id"] in answers["admin GET /admin/usage"].text  # the listings do list them
    assert {what: found for what, r in answers.items() if (found := run.found_in(r.text))} == {}
    status = platform.cli("status", "--json").stdout  # the operator's listing
    assert json.loads(status)["users"] >= 2
    assert run.found_in(status) == []


def test_secrets_are_not_in_the_database_in_clear(platform: Platform, run: Run) -> None:
    """The raw database files (with the WAL) hold neither the Flower tokens nor any password or token."""
    raw = b"".join(p.read_bytes() for p in platform.state.glob("ai4lab.sqlite*"))
    assert raw
    assert run.found_in(raw) == []
    with sqlite3.connect(platform.state / "ai4lab.sqlite") as conn:
        (state,) = conn.execute("SELECT backend_state FROM deployments WHERE id = ?", (run.flower["id"],)).fetchone()
    assert json.loads(state)["token"].startswith("fernet:")


def test_files_holding_secrets_are_private(platform: Platform) -> None:
    files = ["secrets.json", "secret-box.key", *(p.name for p in platform.state.glob("*.sqlite*"))]
    assert {"ai4lab.sqlite", "jupyterhub.sqlite"} <= set(files)
    modes = {name: oct(stat.S_IMODE((platform.state / name).stat().st_mode)) for name in files
             if (platform.state / name).exists() and not name.startswith("mlflow")}
    assert {name: m for name, m in modes.items() if int(m, 8) & 0o077} == {}


def test_every_state_file_holding_a_secret_is_private(platform: Platform, run: Run) -> None:
    """Wherever a secret value is written in the state folder, only the platform's account may read it.

    ``up.out`` is the harness's copy of the operator's terminal (where the admin password is
    shown once); users' storage and workspaces are theirs.
    """
    skip = {platform.state / "up.out", platform.state / "storage", platform.state / "workspaces"}
    holding = {}
    for path in platform.state.rglob("*"):
        if any(path == s or s in path.parents for s in skip) or not path.is_file() or path.stat().st_size > 50e6:
            continue
        if found := run.found_in(path.read_bytes()):
            holding[path.relative_to(platform.state).as_posix()] = (oct(stat.S_IMODE(path.stat().st_mode)), found)
    assert "secrets.json" in holding and "secret-box.key" in holding
    assert {name: m for name, m in holding.items() if int(m[0], 8) & 0o077} == {}


def test_no_platform_secret_reaches_a_deployment_process(run: Run) -> None:
    platform_only = {k: v for k, v in run.secrets.items()
                     if k.startswith("secrets.json") or k in ("admin password", "the secret-box key",
                                                               "lena's API token", "admin's API token")}
    for what, env in run.process_envs.items():
        values = "\n".join(f"{k}={v}" for k, v in env.items())
        assert [k for k, v in platform_only.items() if v in values] == [], what
        assert not any(k.startswith("JUPYTERHUB_") for k in env), (what, sorted(env))


def test_the_owner_still_gets_the_flower_token(platform: Platform, run: Run) -> None:
    """Sealing keeps the dedicated owner-only endpoint working: it opens what the listings never show."""
    with platform.api(run.user_token) as lena:
        assert lena.get(f"{API}/deployments/{run.flower['id']}/flower/token").json()["token"] == \
            run.secrets["the rotated Flower token"]
    platform.add_user("nosy", "nosy-password", role="intermediate")
    with platform.api(platform.token("nosy")) as nosy:
        assert nosy.get(f"{API}/deployments/{run.flower['id']}/flower/token").status_code == 404
