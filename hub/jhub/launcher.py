"""``ai4lab up``: start the hub (which starts the proxy and the services) in the foreground.

The launcher owns the process tree: Ctrl-C or SIGTERM stops the hub, which stops
the proxy, services and sessions; whatever is still alive after that (a session
that ignored SIGTERM, a crashed hub's children) is killed here, so nothing is
left behind. Sessions stopped by a shutdown are started again on the next
``ai4lab up``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console

from ai4lab.backends.local import kill_tree
from ai4lab.client.hub import HubClient, HubError
from ai4lab.core import accounts, db
from ai4lab.core import deployments as deps
from ai4lab.core.isolation import describe_mode
from ai4lab.core.limits import CgroupLimits
from ai4lab.core.mounts import unmount_all
from ai4lab.core.secrets_store import load_or_create
from ai4lab.core.settings import Settings
from ai4lab.deploy.registry import resumes_after_restart
from ai4lab.jhub.hubconfig import default_config_file, prepare_state

console = Console(stderr=True, soft_wrap=True, highlight=False)
ADMIN_NAME = "admin"


def ensure_admin(settings: Settings) -> tuple[str, str | None]:
    """Create the first admin on first start; its generated password is returned then, and never again.

    Why not kept: a password kept in a file is one more place to steal it from, and a
    password printed on every start ends up in every captured terminal log. Who lost it
    sets a new one with ``ai4lab users password admin``.
    """
    if any(u.is_admin for u in accounts.list_users(settings.db_url)):
        return ADMIN_NAME, None
    password = secrets.token_urlsafe(12)
    accounts.add_user(settings.db_url, ADMIN_NAME, password, role="advanced", admin=True)
    return ADMIN_NAME, password


def hub_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["AI4LAB_STATE_DIR"] = str(settings.state)
    tools = str(settings.tools_bin)
    env["PATH"] = os.pathsep.join([tools, str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def wait_ready(settings: Settings, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    wait_hub(f"{settings.public_url}/hub/api/", proc, settings.logs_dir / "hub.log", timeout)


def wait_hub(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 120) -> None:
    """Until the hub ``proc`` answers ``url``; its exit or no answer within ``timeout`` is an error naming its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited with code {proc.returncode}; see {log_path}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the hub did not answer at {url} within {timeout:g}s")


async def resume_sessions(settings: Settings) -> int:
    """Start again the sessions that the last shutdown stopped."""
    data, _ = load_or_create(settings.state)
    client = HubClient(f"http://127.0.0.1:{settings.hub_port}/hub/api", data["api_service_token"])
    resumed = 0
    for dep in deps.list_deployments(settings.db_url, kind="ide"):
        if dep.status != "stopped" or dep.status_reason != deps.SHUTDOWN_REASON:
            continue
        keys = ("profile", "ide", "cpu", "ram_gb", "gpu", "gpu_model")
        options: dict[str, Any] = {k: dep.spec[k] for k in keys if k in dep.spec}
        try:
            await client.ensure_user(dep.owner)
            await client.start_server(dep.owner, "" if dep.name == "default" else dep.name, options)
            resumed += 1
        except HubError as e:
            deps.set_status(settings.db_url, dep.id, "stopped", f"could not resume after restart: {e}")
    return resumed


def sweep_local_processes(settings: Settings) -> int:
    """Kill processes of deployments still marked active after the hub exited; mark them stopped."""
    killed = 0
    for dep in deps.list_deployments(settings.db_url, active_only=True):
        if dep.backend != "local" or dep.status == "queued":  # queued ones wait for the next start
            continue
        pid, ctime = dep.backend_state.get("pid"), dep.backend_state.get("create_time")
        if pid:
            kill_tree(
                int(pid),
                float(ctime) if ctime else None,
                timeout=5,
                ticks=dep.backend_state.get("start_ticks"),
                sig=int(dep.backend_state.get("stop_signal", 15)),
            )
            killed += 1
        if resumes_after_restart(dep.kind, dep.backend):  # sessions and servers start again with the platform
            deps.set_status(settings.db_url, dep.id, "stopped", deps.SHUTDOWN_REASON)
        elif dep.kind in ("training", "batch", "dataset"):  # a job cannot resume where it was
            what = "dataset import" if dep.kind == "dataset" else dep.kind
            deps.set_status(settings.db_url, dep.id, "failed", f"the platform was stopped during the {what}")
        else:
            deps.set_status(settings.db_url, dep.id, "stopped", "the platform was stopped")
    return killed


def up(settings: Settings, config_file: Path | None = None) -> int:
    state = settings.state
    # what the platform creates (databases, logs, secrets) is its own unless it says otherwise
    os.umask(0o077)
    prepare_state(settings)
    session = Path(settings.session_env or sys.prefix) / "bin" / "jupyterhub-singleuser"
    if settings.spawner == "ai4lab-local" and not session.exists():
        raise FileNotFoundError(
            f"the session environment is missing ({session}): run scripts/install.sh, "
            "which builds it, or set session_env"
        )
    limits = CgroupLimits(settings.cgroup_parent)
    limits.sweep(keep=())  # groups of a platform that crashed: nothing of this one runs yet
    db.upgrade(settings.db_url)
    admin, password = ensure_admin(settings)
    flag = state / "shutting-down"
    flag.unlink(missing_ok=True)
    config_file = config_file or default_config_file()
    if not config_file.exists():
        raise FileNotFoundError(f"JupyterHub config not found: {config_file}")
    log_path = settings.logs_dir / "hub.log"
    console.print(f"[bold]ai4lab[/] starting (state: {state}, hub log: {log_path})")
    console.print(f"  {describe_mode(settings)}; resource {limits.description}")
    with open(log_path, "ab") as log:
        hub = subprocess.Popen(
            [sys.executable, "-m", "ai4lab.jhub.app", "-f", str(config_file)],
            cwd=state,
            env=hub_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stopping = False
    known: dict[int, psutil.Process] = {}

    def remember_tree() -> None:
        # the hub's children are re-parented when it exits: remember them while it runs
        for p in _tree(hub.pid):
            known.setdefault(p.pid, p)

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            remember_tree()
            flag.touch()
            console.print("\n[bold]ai4lab[/] stopping ...")
            hub.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        wait_ready(settings, hub)
        resumed = asyncio.run(resume_sessions(settings))
        console.print(f"[bold green]ai4lab is running at {settings.public_url}[/]")
        if password:
            console.print(f"  admin login: [bold]{admin}[/] / [bold]{password}[/] (shown this once: note it)")
        else:
            console.print(
                f"  admin login: [bold]{admin}[/] (password shown on first start; "
                f"'ai4lab users password {admin}' sets a new one)"
            )
        console.print(f"  platform API: {settings.public_url}/services/ai4lab/docs")
        console.print(f"  MLflow: {settings.public_url}/services/mlflow/")
        if resumed:
            console.print(f"  resumed {resumed} session(s) stopped by the last shutdown")
        console.print("  press Ctrl-C to stop")
        sys.stdout.flush()
        while hub.poll() is None:
            remember_tree()
            time.sleep(0.5)
    except Exception as e:  # noqa: BLE001 - report, then clean up below
        if not stopping:
            console.print(f"[red]error:[/] {e}")
            flag.touch()
            hub.send_signal(signal.SIGTERM)
    finally:
        try:
            hub.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        kill_tree(hub.pid, timeout=5)
        leftovers = [p for p in known.values() if p.pid != hub.pid and p.is_running()]
        for p in leftovers:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(leftovers, timeout=5)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        sweep_local_processes(settings)
        unmount_all(settings)  # users' S3 / WebDAV storage: rclone exits with its mount
        CgroupLimits(settings.cgroup_parent).teardown()  # whatever a job left in its group
        flag.unlink(missing_ok=True)
    code = hub.returncode or 0
    console.print(f"[bold]ai4lab[/] stopped (hub exit code {code})")
    return 0 if stopping else (code or 1)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
