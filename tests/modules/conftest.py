"""Fixtures for the bundled AI modules: cached per-module environments and real DEEPaaS servers.

The environments are cached under ``<runtime dir>/test-envs`` (not a temp
dir) so that a second test run reuses them; a module's environment is rebuilt
only when its sources change (see ``ai4lab.core.envs``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from ai4lab.core.envs import ensure_env, env_bin

from .helpers import MODULES_DIR, TEST_ENVS_ROOT, free_port, process_alive


@pytest.fixture(scope="session")
def module_env() -> Callable[[str], Path]:
    """``module_env(name)``: the module's environment with its ``test`` extra (built once, cached)."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = ensure_env(MODULES_DIR / name, TEST_ENVS_ROOT, extras=("test",))
        return built[name]

    return get


@dataclass
class DeepaasServer:
    """A real ``deepaas-run`` from a module's environment, on a free port."""

    name: str
    env_dir: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    pids: dict[int, float] = field(default_factory=dict)  # pid -> create_time (pids get reused)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DEEPAAS_", "VIRTUAL_ENV"))}
        env.update({"DEEPAAS_V2_MODEL": self.name, **self.extra_env})
        cmd = [str(env_bin(self.env_dir, "deepaas-run")), "--listen-ip", "127.0.0.1", "--listen-port", str(self.port)]
        self._log = self.log_path.open("wb")
        # own session: stop() can signal the server and the pool workers it spawns, and nothing else
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"deepaas-run exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/models/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            self.stop()
            raise TimeoutError(f"deepaas-run did not answer within {timeout}s:\n{self.log_tail()}")
        self._remember_pids()

    def _remember_pids(self) -> None:
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.pids[p.pid] = p.create_time()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (deepaas exits on it), SIGKILL after ``timeout``; then nothing of it may be left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._remember_pids()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()

    def leftovers(self, wait: float = 10.0) -> list[int]:
        """Pids of the server or its workers still alive (after waiting up to ``wait`` s)."""
        deadline = time.monotonic() + wait
        while True:
            alive = [p for p, created in self.pids.items() if process_alive(p, created)]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)


@pytest.fixture(scope="module")
def deepaas_server(
    module_env: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., DeepaasServer]]:
    """Factory ``deepaas_server(name, **env)``: started now, stopped (and checked gone) at module end."""
    servers: list[DeepaasServer] = []

    def start(name: str, **extra_env: str) -> DeepaasServer:
        tmp = tmp_path_factory.mktemp(f"{name}-server")
        server = DeepaasServer(
            name=name,
            env_dir=module_env(name),
            log_path=tmp / "deepaas.log",
            extra_env={"AI4LAB_MODEL_DIR": str(tmp / "models"), **extra_env},
        )
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        assert server.proc is not None and server.proc.returncode is not None
        assert server.leftovers() == [], f"{server.name}: processes left after stop:\n{server.log_tail()}"
