"""Start a real ai4lab platform (``ai4lab up``) on free ports for tests, and talk to it."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_STATE_DIRS: list[Path] = []


def reachable_state(state: Path) -> Path:
    """Where a test platform's state really lives when user accounts must reach into it.

    pytest keeps its temporary folders private (0700, and it closes its root
    again at every session start), but a platform's state folder must lie
    where each user account can traverse to its own storage and workspace.
    As root, the state goes to a fresh folder below /tmp, and the path the
    test asked for becomes a link to it; the folders are removed at exit.
    """
    if os.geteuid() != 0 or state.exists():
        return state.resolve() if state.exists() else state
    real = Path(tempfile.mkdtemp(prefix="ai4lab-test-state-", dir="/tmp"))
    os.chmod(real, 0o711)
    if not _STATE_DIRS and not os.environ.get("AI4LAB_KEEP_TEST_STATE"):  # kept for debugging when set
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _STATE_DIRS])
    _STATE_DIRS.append(real)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.symlink_to(real / "state", target_is_directory=True)
    (real / "state").mkdir()
    return real / "state"


@dataclass
class Platform:
    state: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    output: str = ""
    admin_password: str = ""
    #: where ``ai4lab`` is run from: the suite's venv, or another install (tests/integration/test_wheel.py)
    bin_dir: Path = VENV_BIN
    #: working directory of ``ai4lab up`` and the CLI (None: the test's own)
    cwd: Path | None = None

    @classmethod
    def create(cls, state: Path, **settings: str) -> "Platform":
        state = reachable_state(state)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AI4LAB_", "JUPYTERHUB_"))}
        env.update(
            {
                "AI4LAB_STATE_DIR": str(state),
                "AI4LAB_PORT": str(free_port()),
                "AI4LAB_HUB_PORT": str(free_port()),
                "AI4LAB_PROXY_API_PORT": str(free_port()),
                "AI4LAB_API_PORT": str(free_port()),
                "AI4LAB_MLFLOW_PORT": str(free_port()),
                "AI4LAB_MLFLOW_BACKEND_PORT": str(free_port()),
                "AI4LAB_IDLE_TIMEOUT": "0",
                "AI4LAB_CONFIG": str(state / "ai4lab.yaml"),
            }
        )
        env.update({f"AI4LAB_{k.upper()}": v for k, v in settings.items()})
        return cls(state=state, env=env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['AI4LAB_PORT']}"

    def cli(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [str(self.bin_dir / "ai4lab"), *args], env=self.env, capture_output=True, text=True, input=input,
            timeout=120, cwd=self.cwd,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"ai4lab {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def start(self, timeout: float = 120) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self._log = open(self.state / "up.out", "w+")
        self.proc = subprocess.Popen(
            [str(self.bin_dir / "ai4lab"), "up"], env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            text=True, cwd=self.cwd,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._log.seek(0)
            self.output = self._log.read()
            if "ai4lab is running" in self.output and "press Ctrl-C" in self.output:
                m = re.search(r"admin login: admin / (\S+)", self.output)
                if m:
                    self.admin_password = m.group(1)
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"ai4lab up exited: {self.output}\n{self.hub_log()[-3000:]}")
            time.sleep(0.3)
        raise TimeoutError(f"ai4lab up not ready: {self.output}\n{self.hub_log()[-3000:]}")

    def hub_log(self) -> str:
        path = self.state / "logs" / "hub.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def process_tree(self) -> list[psutil.Process]:
        if not self.proc:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGINT, timeout: float = 90) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._log.seek(0)
        self.output = self._log.read()
        self._log.close()
        return code

    def wait_mlflow(self, token: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.url}/services/mlflow/gateway-health",
                              headers={"Authorization": f"token {token}"}, timeout=5)
                if r.status_code == 200 and r.json().get("mlflow") == "ok":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError("MLflow did not become healthy")

    # -- users -------------------------------------------------------------------
    def add_user(self, name: str, password: str, role: str = "basic", admin: bool = False) -> None:
        args = ["users", "add", name, "--role", role, "--password", password]
        self.cli(*(args + ["--admin"] if admin else args))

    def token(self, name: str) -> str:
        return self.cli("users", "token", name).stdout.strip()

    def login(self, name: str, password: str) -> httpx.Client:
        """A browser-like client logged in through the hub's login form."""
        client = httpx.Client(base_url=self.url, follow_redirects=True, timeout=60)
        client.get("/hub/login")
        xsrf = client.cookies.get("_xsrf", path="/hub/") or client.cookies.get("_xsrf")
        r = client.post("/hub/login", data={"username": name, "password": password, "_xsrf": xsrf})
        if r.status_code >= 400 or "jupyterhub-session-id" not in client.cookies:
            raise AssertionError(f"login of {name} failed: {r.url}")
        return client

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"token {token}"}, timeout=60)

    def new_user_api(self, name: str, role: str = "basic") -> httpx.Client:
        """A new account (password ``<name>-password``) and an API client with its token."""
        self.add_user(name, f"{name}-password", role=role)
        return self.api(self.token(name))

    def wait_server(self, token: str, user: str, server: str = "", timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.api(token) as api:
            while time.monotonic() < deadline:
                model = api.get(f"/hub/api/users/{user}").json()
                srv = model.get("servers", {}).get(server)
                if srv and srv.get("ready"):
                    return srv
                time.sleep(0.3)
        raise TimeoutError(f"server {user}/{server} not ready: {json.dumps(model)[:500]}\n{self.hub_log()[-2000:]}")


def platform_processes(state: Path) -> list[psutil.Process]:
    """Processes started for this platform: their command line or HOME points into its state folder."""
    found = []
    for proc in psutil.process_iter():
        try:
            if str(state) in " ".join(proc.cmdline()) or proc.environ().get("HOME", "").startswith(str(state)):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def gone(procs: list[psutil.Process], timeout: float = 10) -> list[psutil.Process]:
    """Those of ``procs`` still alive (zombies count as gone) after waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = procs
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    return alive


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """``check()``'s first truthy value within ``timeout`` seconds; TimeoutError saying ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(what)
