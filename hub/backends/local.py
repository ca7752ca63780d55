"""Local backend: deployments are process trees on this machine.

Each job runs in its own session (process group) so that stop reaches every
child (e.g. code-server under jupyter-server-proxy). A job is identified by pid
plus its start time, so that a recycled pid is never mistaken for it after a
platform restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections import deque
from pathlib import Path
from typing import Any

import psutil

from ai4lab.backends.base import Backend, JobSpec, JobStatus


def _same_process(state: dict[str, Any]) -> psutil.Process | None:
    try:
        proc = psutil.Process(int(state["pid"]))
        if abs(proc.create_time() - float(state["create_time"])) > 1:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return None


def kill_tree(pid: int, create_time: float | None = None, timeout: float = 10) -> None:
    """SIGTERM the process, its group and descendants; SIGKILL what is left after timeout."""
    procs: list[psutil.Process] = []
    try:
        root = psutil.Process(pid)
        if create_time is not None and abs(root.create_time() - create_time) > 1:
            return  # the pid was recycled: so our group is gone too, nothing of ours is left
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    # Jobs lead their own process group, whose members can outlive a leader that exited;
    # Linux does not reuse a pid while a group of that id exists, so such a group is ours.
    procs += [p for p in _group_members(pid) if p not in procs]
    if not procs:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                members.append(p)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            pass
    return members


class LocalBackend(Backend):
    name = "local"

    def __init__(self) -> None:
        # Popen objects of jobs started by this process, kept to reap them and read exit codes.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    async def submit(self, spec: JobSpec) -> dict[str, Any]:
        env = dict(spec.env)
        if spec.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(spec.gpu_ids)
        else:
            env.setdefault("CUDA_VISIBLE_DEVICES", "")
        log_path = spec.log_path or Path(spec.cwd or ".") / f"{spec.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if spec.cwd:
            Path(spec.cwd).mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                spec.command,
                env=env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        return {
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "log_path": str(log_path),
        }

    async def status(self, state: dict[str, Any]) -> JobStatus:
        pid = int(state.get("pid", 0))
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            if code is None:
                return JobStatus(running=True)
            return JobStatus(running=False, exit_code=code, reason=f"exited with code {code}")
        if _same_process(state) is not None:
            return JobStatus(running=True)
        return JobStatus(running=False, reason="process is gone")

    async def logs(self, state: dict[str, Any], tail: int | None = None) -> str:
        path = Path(state.get("log_path", ""))
        if not path.is_file():
            return ""
        with open(path, errors="replace") as f:
            if tail:
                return "".join(deque(f, maxlen=tail))
            return f.read()

    async def stop(self, state: dict[str, Any], timeout: float = 10) -> None:
        pid = int(state.get("pid", 0))
        if not pid:
            return
        child = self._children.get(pid)
        await asyncio.to_thread(kill_tree, pid, float(state.get("create_time", 0)) or None, timeout)
        if child is not None:
            await asyncio.to_thread(child.wait)

    def capacity(self) -> dict[str, Any]:
        return {
            "cpu": os.cpu_count(),
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        }
