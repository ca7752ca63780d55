"""The two hubs the storm benchmarks compare, behind one small interface.

- :class:`BareHub`: JupyterHub with ``SimpleLocalProcessSpawner`` from the same
  venv, the anchor the issue measured against;
- :class:`Ai4labHub`: a whole ai4lab platform (``ai4lab up``: hub, proxy,
  platform API, MLflow) with its default session form values.

Both are driven only through the JupyterHub REST API with an admin token, so
the client side is identical.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ai4lab.jhub.launcher import wait_hub  # noqa: E402
from tests.platform_harness import Platform, free_port  # noqa: E402

BARE_CONFIG = """\
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.pid_file = "{folder}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = "{folder}/proxy.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = "{folder}/home/{{username}}"
c.Spawner.cmd = ["{singleuser}"]
c.Spawner.args = {args}
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.JupyterHub.services = [{{"name": "bench", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{"name": "bench", "services": ["bench"], "scopes": ["admin:users", "admin:servers",
    "list:users", "read:users", "servers"]}}]
"""


@dataclass
class BareHub:
    """JupyterHub as it comes, on free ports in a temporary folder."""

    name: str = "bare JupyterHub"
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ai4lab-bench-bare-")))
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        singleuser = Path(sys.executable).parent / "jupyterhub-singleuser"
        args = ["--allow-root"] if os.geteuid() == 0 else []
        (self.folder / "jupyterhub_config.py").write_text(
            BARE_CONFIG.format(port=self.port, hub_port=free_port(), proxy_api_port=free_port(), folder=self.folder,
                               singleuser=singleuser, args=args, token=self.token)
        )
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), *_tool_dirs(), env.get("PATH", "")])
        with open(self.folder / "hub.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.folder / "jupyterhub_config.py")],
                cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_hub(f"{self.url}/hub/api/", self.proc, self.folder / "hub.log")

    def add_users(self, names: list[str]) -> None:
        _add_hub_users(self.url, self.token, names)

    def stop(self) -> float:
        """Ctrl-C (SIGINT) to exit, in seconds."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)
        return time.monotonic() - t0

    def service_processes(self) -> dict[str, list[psutil.Process]]:
        assert self.proc is not None
        hub = psutil.Process(self.proc.pid)
        proxy = [p for p in hub.children() if "configurable-http-proxy" in " ".join(p.cmdline())]
        return {"hub": [hub], "proxy": proxy}

    def log(self) -> str:
        return (self.folder / "hub.log").read_text(errors="replace")


@dataclass
class Ai4labHub:
    """A whole ai4lab platform; users are platform accounts (role basic) known to the hub."""

    name: str = "ai4lab"
    platform: Platform | None = None
    token: str = ""

    @property
    def url(self) -> str:
        assert self.platform is not None
        return self.platform.url

    def start(self) -> None:
        state = Path(tempfile.mkdtemp(prefix="ai4lab-bench-")) / "state"
        self.platform = Platform.create(state)
        self.platform.start()
        self.token = self.platform.token("admin")

    def add_users(self, names: list[str]) -> None:
        """Platform accounts in one transaction (one password hash), then hub users."""
        assert self.platform is not None
        from ai4lab.core.accounts import hash_password
        from ai4lab.core.db import User, session_scope

        password_hash = hash_password("bench-password")
        with session_scope(f"sqlite:///{self.platform.state / 'ai4lab.sqlite'}") as db:
            for name in names:
                if db.get(User, name) is None:
                    db.add(User(name=name, role="basic", is_admin=False, password_hash=password_hash))
        _add_hub_users(self.url, self.token, names)

    def stop(self) -> float:
        assert self.platform is not None
        t0 = time.monotonic()
        self.platform.stop()
        return time.monotonic() - t0

    def service_processes(self) -> dict[str, list[psutil.Process]]:
        assert self.platform is not None
        found: dict[str, list[psutil.Process]] = {"hub": [], "proxy": [], "platform API": [], "MLflow": []}
        for p in self.platform.process_tree():
            line = " ".join(p.cmdline())
            if "-m ai4lab.jhub.app" in line:
                found["hub"].append(p)
            elif "configurable-http-proxy" in line:
                found["proxy"].append(p)
            elif "-m ai4lab.api.mlflow_gateway" in line:
                found["MLflow"].extend([p, *p.children(recursive=True)])
            elif "-m ai4lab.api" in line:
                found["platform API"].append(p)
        return found

    def log(self) -> str:
        assert self.platform is not None
        return self.platform.hub_log()


def _tool_dirs() -> list[str]:
    """Where ``ai4lab``'s installer puts configurable-http-proxy (the bare hub needs it too)."""
    from ai4lab.core.settings import Settings

    return [str(Settings().tools_bin)]


def _add_hub_users(url: str, token: str, names: list[str]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"token {token}"}, timeout=120) as api:
        have = {u["name"] for u in api.get("/hub/api/users", params={"limit": 1000}).json()}
        new = [n for n in names if n not in have]
        if new:
            api.post("/hub/api/users", json={"usernames": new}).raise_for_status()
