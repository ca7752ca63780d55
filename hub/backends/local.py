"""Local backend: deployments are process trees on this machine.

Each job runs in its own session (process group) so that stop reaches every
child (e.g. code-server under jupyter-server-proxy). A job is identified by pid
plus its start time, so that a recycled pid is never mistaken for it after a
platform restart.

``submit`` is the one launcher of user code on this machine: every job runs
as its owner's system user (see ``ai4lab.core.isolation``) with a clean
environment, so no code path can forget to drop privileges. A job without an
owner is refused while the platform isolates users. Each job also gets its own
cgroup (``ai4lab.core.limits``) with the CPU and memory it asked for; a job whose
group saw an out-of-memory kill is ended whole and reported with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import psutil

from ai4lab.backends.base import JobSpec, JobStatus
from ai4lab.core import isolation
from ai4lab.core.isolation import Accounts, Identity, IsolationError
from ai4lab.core.limits import CgroupLimits, Group

log = logging.getLogger(__name__)
#: The environment variable naming the job (``JobSpec.name``) in each of its processes.
JOB_MARK = "AI4LAB_JOB"


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (field 22 of /proc/<pid>/stat).

    Why not only ``create_time``: that is derived from the wall clock's idea of
    the boot time, which moves when a virtual machine's clock is stepped, so a
    job started minutes ago can seem "recycled" and be left running at stop.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _is_same(proc: psutil.Process, create_time: float | None, ticks: int | None) -> bool:
    if ticks is not None:
        return start_ticks(proc.pid) == ticks
    return create_time is None or abs(proc.create_time() - create_time) <= 1


def _same_process(state: dict[str, Any]) -> psutil.Process | None:
    try:
        proc = psutil.Process(int(state["pid"]))
        if not _is_same(proc, float(state["create_time"]), state.get("start_ticks")):
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return None


def signal_tree(
    pid: int, create_time: float | None = None, ticks: int | None = None, sig: int = signal.SIGTERM
) -> list[psutil.Process]:
    """``sig`` (SIGTERM) to the process, its group and descendants; those signalled (none if the pid was recycled)."""
    procs: list[psutil.Process] = []
    try:
        root = psutil.Process(pid)
        if not _is_same(root, create_time, ticks):
            return []  # the pid was recycled: so our group is gone too, nothing of ours is left
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    # Jobs lead their own process group, whose members can outlive a leader that exited;
    # Linux does not reuse a pid while a group of that id exists, so such a group is ours.
    procs += [p for p in _group_members(pid) if p not in procs]
    if not procs:
        return []
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    return procs


def _kill(procs: list[psutil.Process]) -> None:
    """SIGKILL what is left and wait for it (briefly: SIGKILL cannot be ignored)."""
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=5)


def kill_tree(
    pid: int,
    create_time: float | None = None,
    timeout: float = 10,
    ticks: int | None = None,
    sig: int = signal.SIGTERM,
) -> list[int]:
    """``sig`` (SIGTERM) to the process, its group and descendants; SIGKILL what is left after timeout.

    Returns the pids it signalled, for the caller's log.
    """
    procs = signal_tree(pid, create_time, ticks, sig)
    if procs:
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        _kill(alive)
    return [p.pid for p in procs]


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def stop_tree(
    pid: int,
    create_time: float | None = None,
    timeout: float = 10,
    ticks: int | None = None,
    child: subprocess.Popen[bytes] | None = None,
    sig: int = signal.SIGTERM,
) -> list[int]:
    """``kill_tree`` without holding a thread while the processes exit.

    Why: the event loop's default pool has a handful of threads (6 on 2
    cores); with one held per stopping job, 100 sessions stopped at once
    (Ctrl-C, or every server stopped by an admin) queued behind each other.
    ``child``, our own Popen of the job, is reaped as it exits. ``sig``: the job's stop signal.
    """
    procs = await asyncio.to_thread(signal_tree, pid, create_time, ticks, sig)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.05
    alive = procs
    while alive and loop.time() < deadline:
        await asyncio.sleep(pause)
        pause = min(0.5, pause * 1.5)
        if child is not None:
            child.poll()
        alive = [p for p in alive if _running(p)]
    if alive:
        await asyncio.to_thread(_kill, alive)
    return [p.pid for p in procs]


def read_log(path: Path, tail: int | None = None) -> str:
    """A job's log, or its last ``tail`` lines; '' before it exists."""
    if not path.is_file():
        return ""
    with open(path, errors="replace") as f:
        if tail:
            return "".join(deque(f, maxlen=tail))
        return f.read()


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                members.append(p)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            pass
    return members


def secrets_folder(secrets: dict[str, str], ident: Identity) -> Path:
    """A new folder private to ``ident`` (0700) with one file per secret (0600, named as the secret).

    In ``/dev/shm`` where the machine has it: the values stay in memory, never on a
    disk that outlives the job. The folder's name is random (``mkdtemp``), so jobs of
    several platforms on one machine never share one, and is kept in the job's state
    so that ``stop`` (or the status that finds the job ended) removes it.
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else Path(tempfile.gettempdir())
    folder = Path(tempfile.mkdtemp(prefix="ai4lab-secrets-", dir=base))
    try:
        for name, value in secrets.items():
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)
            isolation.give(folder / name, ident, 0o600)
        isolation.give(folder, ident, 0o700)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def remove_secrets_folder(state: dict[str, Any]) -> None:
    """Remove the secrets folder of a job (files mode), if it had one; never through a link the job put there."""
    path = state.get("secrets_dir")
    if not path or os.path.islink(path) or not os.path.isdir(path):
        return
    shutil.rmtree(path, ignore_errors=True)


class LocalBackend:
    name = "local"

    def __init__(
        self, accounts: Accounts | None = None, limits: CgroupLimits | None = None, nice: int | None = None
    ) -> None:
        # Popen objects of jobs started by this process, kept to reap them and read exit codes.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._accounts = accounts
        self._limits = limits
        self._nice = nice

    @property
    def nice(self) -> int:
        """How much lower than the platform's own the CPU priority of jobs is (settings ``job_nice``)."""
        if self._nice is None:
            from ai4lab.core.settings import get_settings

            self._nice = get_settings().job_nice
        return self._nice

    @property
    def accounts(self) -> Accounts:
        if self._accounts is None:
            from ai4lab.core.settings import get_settings

            self._accounts = Accounts.from_settings(get_settings())
        return self._accounts

    @property
    def limits(self) -> CgroupLimits:
        if self._limits is None:
            from ai4lab.core.settings import get_settings

            self._limits = CgroupLimits(get_settings().cgroup_parent)
        return self._limits

    def _group(self, state: dict[str, Any]) -> Group | None:
        name = state.get("cgroup")
        return self.limits.group(name) if name and self.limits.enforced else None

    def identity(self, owner: str | None) -> Identity:
        """The system user a job of ``owner`` runs as (created on first use)."""
        if owner is None:
            if self.accounts.enabled:
                raise IsolationError("a job without an owner would run as the platform: refused")
            return self.accounts.platform_user()
        return self.accounts.ensure(owner)

    def user_dir(self, owner: str, path: Path, base: Path) -> Path:
        """Create ``path`` (and missing folders below ``base``) private to ``owner``, e.g. an output folder."""
        return isolation.private_dir(path, self.identity(owner), base)

    async def submit(self, spec: JobSpec) -> dict[str, Any]:
        """Start the job as its owner's system user; the state to find it again (pid, start time, log, cgroup).

        In a worker thread: making the account, the folders and the cgroup, and
        forking, are blocking work the event loop (the hub's, the API's) must not wait for.
        """
        return await asyncio.to_thread(self._launch, spec)

    def _launch(self, spec: JobSpec) -> dict[str, Any]:
        ident = self.identity(spec.owner)
        home = spec.env.get("HOME") or str(spec.cwd or ident.home)
        env = isolation.user_env(ident, home, spec.env)
        env[JOB_MARK] = spec.name  # finds the job's processes when its state was never recorded (stop_job)
        folder = None
        if spec.secrets and spec.secrets_as == "files":
            folder = secrets_folder(spec.secrets, ident)
            env["AI4LAB_SECRETS_DIR"] = str(folder)
        elif spec.secrets:
            env = {**spec.secrets, **env}  # the platform's own variables win over a secret of the same name
        if spec.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(spec.gpu_ids)
        else:
            env.setdefault("CUDA_VISIBLE_DEVICES", "")
        log_path = spec.log_path or Path(spec.cwd or ".") / f"{spec.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if spec.cwd and not Path(spec.cwd).exists():
            isolation.private_dir(Path(spec.cwd), ident)
        for path in spec.owned_paths:
            isolation.give_tree(Path(path), ident)
        group = (
            self.limits.create(spec.name, cpu=spec.cpu, ram_gb=spec.ram_gb or None)
            if self.limits.enforced and (spec.cpu or spec.ram_gb)
            else None
        )
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    spec.command,
                    env=env,
                    cwd=spec.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=isolation.preexec(ident, before=group.join if group else None, nice=self.nice),
                )
        except BaseException:
            remove_secrets_folder({"secrets_dir": str(folder) if folder else None})
            raise
        self._children[proc.pid] = proc
        return {
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "start_ticks": start_ticks(proc.pid),
            "log_path": str(log_path),
            "stop_signal": int(spec.stop_signal),
            "uid": ident.uid,
            **({"cgroup": group.name} if group else {}),
            **({"secrets_dir": str(folder)} if folder else {}),
        }

    async def status(self, state: dict[str, Any]) -> JobStatus:
        pid = int(state.get("pid", 0))
        child = self._children.get(pid)
        group = self._group(state)
        if child is not None:
            code = child.poll()
        elif _same_process(state) is not None:
            code = None
        else:
            remove_secrets_folder(state)
            return self._ended(group, None, "process is gone")
        if code is None:
            if group is not None and group.oom_kills():
                # a process of the job went over its memory: the job ends whole, as a pod would
                await asyncio.to_thread(
                    kill_tree, pid, float(state.get("create_time", 0)) or None, 2, state.get("start_ticks")
                )
                if child is not None:
                    await asyncio.to_thread(child.wait)
                remove_secrets_folder(state)
                return self._ended(group, -signal.SIGKILL, "out of memory")
            return JobStatus(running=True)
        remove_secrets_folder(state)
        return self._ended(group, code, f"exited with code {code}")

    @staticmethod
    def _ended(group: Group | None, code: int | None, reason: str) -> JobStatus:
        """The status of a job that ended; its cgroup's counters say whether memory killed it."""
        if group is not None and group.exists():
            reason = group.reason(code) or reason
            group.remove()
        return JobStatus(running=False, exit_code=code, reason=reason)

    async def logs(self, state: dict[str, Any], tail: int | None = None) -> str:
        return await asyncio.to_thread(read_log, Path(state.get("log_path", "")), tail)

    async def stop(self, state: dict[str, Any], timeout: float = 10) -> None:
        pid = int(state.get("pid", 0))
        if not pid:
            return
        try:
            await self._stop(pid, state, timeout)
        finally:
            remove_secrets_folder(state)

    async def _stop(self, pid: int, state: dict[str, Any], timeout: float) -> None:
        child = self._children.get(pid)
        signalled = await stop_tree(
            pid,
            float(state.get("create_time", 0)) or None,
            timeout,
            state.get("start_ticks"),
            child,
            int(state.get("stop_signal", signal.SIGTERM)),
        )
        if not signalled and psutil.pid_exists(pid):
            # said for the log: a stop that leaves a live process behind must be explainable afterwards
            log.warning(
                "stop of pid %s signalled nothing: its start is %s ticks, the job's %s (create time %s)",
                pid,
                start_ticks(pid),
                state.get("start_ticks"),
                state.get("create_time"),
            )
        if child is not None:
            try:  # bounded: a stop must never hang the hub's thread pool
                await asyncio.to_thread(child.wait, timeout + 10)
            except subprocess.TimeoutExpired:
                child.kill()
        group = self._group(state)
        if group is not None and group.exists():
            await asyncio.to_thread(group.remove)

    async def stop_job(self, name: str, timeout: float = 10) -> int:
        """Stop every process of the job ``name`` found by its environment; returns how many trees were signalled.

        Why: a platform killed between starting a job and recording its state
        leaves a job nobody knows the pid of. Its processes still carry the
        job's name, so recovery can end them before starting it again.
        """

        def roots() -> list[psutil.Process]:
            found = []
            for proc in psutil.process_iter(["pid"]):
                try:
                    if proc.environ().get(JOB_MARK) == name:
                        found.append(proc)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                    continue
            pids = {p.pid for p in found}
            return [p for p in found if p.ppid() not in pids]

        stopped = 0
        for proc in await asyncio.to_thread(roots):
            try:
                ticks = start_ticks(proc.pid)
                await asyncio.to_thread(kill_tree, proc.pid, proc.create_time(), timeout, ticks)
                stopped += 1
            except psutil.NoSuchProcess:
                continue
        return stopped
