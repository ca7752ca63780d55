"""CPU and memory limits of local jobs, enforced with Linux cgroups (v2 or v1).

Why: on the local backend every session, deployment and training used to run
unbounded, so one notebook allocating too much memory could take the machine
and the hub down with it, and the CPU and RAM a user chose were only recorded.
A cgroup per job makes the kernel enforce the choice: memory above the limit
gets the job's processes OOM-killed (inside the group only), CPU above the quota
is throttled, and what a job leaves behind (double-forked daemons that left its
process group) is found and killed when the job ends.

Layout: ``<cgroup root>/<parent>/<job>``, ``parent`` being ``ai4lab`` unless
configured. With cgroup v2 that is one folder; with v1 it is one folder in each
hierarchy used (memory, cpu and cpuacct, which may share a mount). The group of a
job is named after the job (``module-<deployment id>``, ``session-alice-default``),
sanitised, so that an operator can find it and so that a restarted hub can open
it again from the name alone.

Joining happens in the child, after fork and before exec (``Group.join`` as, or
first in, ``subprocess.Popen(preexec_fn=...)``): it must run while the child is
still root, before it drops privileges to the user's account, and before the
job's first instruction, so that nothing the job starts can escape the group.
Note that ``Popen(user=..., group=...)`` switches user *before* calling
``preexec_fn``, so a backend that drops privileges must do it in its own
``preexec_fn``, after ``join``.

Where no cgroup is writable (not root, read-only ``/sys/fs/cgroup``, a v2 tree
without the cpu and memory controllers) the module still works but enforces
nothing: ``CgroupLimits.enforced`` is False, groups are no-ops, and
``CgroupLimits.description`` says so in a sentence for the admin view and the
spawn form.

Typical use by a backend::

    limits = CgroupLimits()                      # once, at start; limits.description for the admin view
    group = limits.create(spec.name, cpu=spec.cpu, ram_gb=spec.ram_gb)
    proc = subprocess.Popen(cmd, preexec_fn=group.join, start_new_session=True)
    ...  # poll: code = proc.poll(); if code is not None: reason = group.reason(code)
    group.remove()                               # after stop: kills leftovers, removes the folders
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

Mode = Literal["v2", "v1", "none"]

GB = 2**30
"""Bytes in one "GB" of the platform's forms and quotas (the same GiB that psutil reports)."""
CFS_PERIOD_US = 100_000
"""The CPU quota period: 100 ms, the kernel's default, short enough that throttling is smooth."""
_MIN_QUOTA_US = 1_000  # the kernel refuses quotas below 1 ms
_UNLIMITED_V1 = 2**62  # v1 reports "no limit" as PAGE_COUNTER_MAX * page size, about 2**63
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct")
_NAME_MAX = 100
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")

# Indirections for folder creation and removal, so that a test can stand in for the kernel
# (which populates a new cgroup folder with its interface files and removes them on rmdir).
_mkdir = os.mkdir
_rmdir = os.rmdir


class LimitsError(RuntimeError):
    """A cgroup operation that failed; the message says which group and why."""


def sanitize(name: str) -> str:
    """The cgroup folder name for a job name: letters, digits, ``_`` and ``-`` only.

    Why: the name becomes one path component next to the kernel's own files
    (which all contain a dot) and must never reach another folder. A name that
    had to be changed gets a short hash of the original, so that two job names
    never share a group; a clean name is kept as it is, and the function is
    idempotent, so callers may pass either form.
    """
    clean = _SAFE.sub("-", name).strip("-")
    if clean and clean == name and len(clean) <= _NAME_MAX:
        return clean
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{clean[: _NAME_MAX - 9]}-{digest}" if clean else digest


def format_gb(ram_gb: float) -> str:
    """``2`` -> ``"2 GB"``, ``1.5`` -> ``"1.5 GB"``: the way the forms write memory."""
    return f"{round(ram_gb, 2):g} GB"


def oom_reason(ram_gb: float | None) -> str:
    """The status reason of a job that the kernel killed for its memory: ``out of memory: limit 2 GB``."""
    return f"out of memory: limit {format_gb(ram_gb)}" if ram_gb else "out of memory"


def parse_mountinfo(text: str) -> tuple[Path | None, dict[str, Path]]:
    """The cgroup v2 mount point and the v1 mount point of each controller we use, from ``/proc/self/mountinfo``.

    Why mountinfo and not fixed paths: hosts mount v1 hierarchies under different
    names (``cpu,cpuacct`` co-mounted with ``cpu`` a symlink, or ``cpu`` and
    ``cpuacct`` apart, as on the development machines), and hybrid hosts put v2 at
    ``/sys/fs/cgroup/unified``. The first mount of each kind wins.
    """
    v2: Path | None = None
    v1: dict[str, Path] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        mount_point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
        fstype, options = rfields[0], rfields[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = mount_point
        elif fstype == "cgroup":
            for controller in _V1_CONTROLLERS:
                if controller in options:
                    v1.setdefault(controller, mount_point)
    return v2, v1


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _read_int(path: Path) -> int | None:
    try:
        return int(_read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (``memory.events``, ``cpu.stat``, ``memory.oom_control``) as a dict."""
    out: dict[str, int] = {}
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _write(path: Path, value: str) -> None:
    """Write a cgroup interface file. No O_CREAT: a missing file means a missing controller, an error."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Usage:
    """What a job uses now against its limits, for the status display; ``None`` where not known."""

    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    memory_limit_bytes: int | None = None
    cpu_seconds: float | None = None
    cpu_limit: float | None = None
    cpu_throttled_seconds: float | None = None
    oom_kills: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Group:
    """The cgroup of one job (a no-op group when limits are not enforced).

    Obtained from ``CgroupLimits.create`` before the job starts, or from
    ``CgroupLimits.group(name)`` to find a running job's group again after a hub
    restart. Read ``oom_killed``/``reason``/``usage`` before ``remove``: the
    kernel's counters go with the folder.
    """

    def __init__(self, name: str, mode: Mode, dirs: Mapping[str, Path]) -> None:
        self.name = name
        self.mode: Mode = mode
        # controller ("memory", "cpu", "cpuacct") -> folder; with v2 all three are the same folder
        self._dirs = dict(dirs)
        self._folders = tuple(dict.fromkeys(self._dirs.values()))
        # computed here, in the parent, so that join() in the forked child only calls os functions
        self._procs_paths = tuple(os.fsencode(d / "cgroup.procs") for d in self._folders)

    def __repr__(self) -> str:
        return f"Group({self.name!r}, mode={self.mode!r})"

    @property
    def enforced(self) -> bool:
        return self.mode != "none"

    @property
    def folders(self) -> tuple[Path, ...]:
        """The group's folders (one with v2, one per hierarchy with v1), for logs and operators."""
        return self._folders

    def join(self) -> None:
        """Move the calling process into the group: meant as (the first step of) ``Popen``'s ``preexec_fn``.

        Why so bare: it runs in the child of a threaded process, between fork and
        exec, where locks held by other threads (logging, imports) may never be
        released. It only calls ``os.open``/``os.write``/``os.close`` on paths
        prepared in the parent; writing ``0`` means "the writer itself". It must
        run as root, before the child drops privileges. A failure raises, so
        ``Popen`` fails and the job does not run unlimited.
        """
        for path in self._procs_paths:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def add(self, pid: int) -> None:
        """Move a running process (and, with v1 ``cgroup.procs``, all its threads) into the group.

        Why: for processes the platform does not start through ``Popen``, e.g.
        the hub itself into a group with a high ``cpu_weight``. Children it
        already has stay where they are.
        """
        for d in self._folders:
            _write(d / "cgroup.procs", str(pid))

    def exists(self) -> bool:
        return any(d.is_dir() for d in self._folders)

    def pids(self) -> list[int]:
        """Processes in the group and in any group below it, in every hierarchy."""
        found: set[int] = set()
        for folder in self._folders:
            for dirpath, _, _ in os.walk(folder):
                try:
                    found.update(int(p) for p in _read(Path(dirpath) / "cgroup.procs").split())
                except (OSError, ValueError):
                    pass
        # the kernel never lists 0 or init here; if a damaged file did, os.kill(0 or -1) would be a disaster
        return sorted(p for p in found if p > 1)

    def oom_kills(self) -> int | None:
        """How many processes the kernel killed in this group for its memory limit; None if it cannot say.

        v2: ``memory.events`` ``oom_kill``; v1: the ``oom_kill`` line of
        ``memory.oom_control`` (kernels from 4.13).
        """
        if not self.enforced:
            return None
        folder = self._dirs["memory"]
        counters = _read_keyed(folder / ("memory.events" if self.mode == "v2" else "memory.oom_control"))
        return counters.get("oom_kill")

    def oom_killed(self, returncode: int | None = None) -> bool:
        """Whether the kernel killed (part of) the job because it went over its memory limit.

        ``returncode`` is ``Popen.returncode`` when known. On old v1 kernels
        without the ``oom_kill`` counter the answer is "the limit was hit
        (``memory.failcnt``) and the job died of SIGKILL", which is what an OOM
        kill looks like from outside.
        """
        kills = self.oom_kills()
        if kills is not None:
            return kills > 0
        if self.mode == "v1":
            failcnt = _read_int(self._dirs["memory"] / "memory.failcnt") or 0
            return failcnt > 0 and returncode == -signal.SIGKILL
        return False

    def memory_limit_bytes(self) -> int | None:
        """The memory limit as the kernel holds it (None: unlimited or not enforced)."""
        if not self.enforced:
            return None
        folder = self._dirs["memory"]
        if self.mode == "v2":
            try:
                text = _read(folder / "memory.max").strip()
            except OSError:
                return None
            return None if text == "max" else int(text)
        value = _read_int(folder / "memory.limit_in_bytes")
        return None if value is None or value >= _UNLIMITED_V1 else value

    def cpu_limit(self) -> float | None:
        """The CPU quota in cores as the kernel holds it (None: unlimited or not enforced)."""
        if not self.enforced:
            return None
        folder = self._dirs["cpu"]
        if self.mode == "v2":
            try:
                quota, period = _read(folder / "cpu.max").split()
            except (OSError, ValueError):
                return None
            return None if quota == "max" else int(quota) / int(period)
        quota_us = _read_int(folder / "cpu.cfs_quota_us")
        period_us = _read_int(folder / "cpu.cfs_period_us")
        if quota_us is None or period_us is None or quota_us < 0:
            return None
        return quota_us / period_us

    def reason(self, returncode: int | None = None) -> str | None:
        """``"out of memory: limit 2 GB"`` when the job was OOM-killed, else None. Call before ``remove``."""
        if not self.oom_killed(returncode):
            return None
        limit = self.memory_limit_bytes()
        return oom_reason(limit / GB if limit else None)

    def usage(self) -> Usage:
        """Memory now and at peak, CPU seconds used and throttled, OOM kills, with the limits."""
        if not self.enforced or not self.exists():
            return Usage()
        mem, cpu = self._dirs["memory"], self._dirs["cpu"]
        if self.mode == "v2":
            stat = _read_keyed(cpu / "cpu.stat")
            usage_us, throttled_us = stat.get("usage_usec"), stat.get("throttled_usec")
            return Usage(
                memory_bytes=_read_int(mem / "memory.current"),
                memory_peak_bytes=_read_int(mem / "memory.peak"),  # kernels from 5.19
                memory_limit_bytes=self.memory_limit_bytes(),
                cpu_seconds=None if usage_us is None else usage_us / 1e6,
                cpu_limit=self.cpu_limit(),
                cpu_throttled_seconds=None if throttled_us is None else throttled_us / 1e6,
                oom_kills=self.oom_kills(),
            )
        usage_ns = _read_int(self._dirs["cpuacct"] / "cpuacct.usage") if "cpuacct" in self._dirs else None
        throttled_ns = _read_keyed(cpu / "cpu.stat").get("throttled_time")
        return Usage(
            memory_bytes=_read_int(mem / "memory.usage_in_bytes"),
            memory_peak_bytes=_read_int(mem / "memory.max_usage_in_bytes"),
            memory_limit_bytes=self.memory_limit_bytes(),
            cpu_seconds=None if usage_ns is None else usage_ns / 1e9,
            cpu_limit=self.cpu_limit(),
            cpu_throttled_seconds=None if throttled_ns is None else throttled_ns / 1e9,
            oom_kills=self.oom_kills(),
        )

    def remove(self, timeout: float = 5.0) -> None:
        """Kill whatever is left in the group (SIGKILL), then remove its folders (every hierarchy with v1).

        Why SIGKILL at once: the backend's stop has already asked the job to end
        (SIGTERM to its process group); what is still in the group now escaped
        that, e.g. a daemon that started its own session. A group that is gone
        already is fine. Raises LimitsError if processes survive ``timeout``.
        """
        if not self.enforced:
            return
        folders = [d for d in self._folders if d.is_dir()]
        if not folders:
            return
        if os.getpid() in self.pids():
            raise LimitsError(f"cgroup {self.name} holds this process itself; move it out before removing the group")
        deadline = time.monotonic() + timeout
        if self.mode == "v2":
            try:
                _write(folders[0] / "cgroup.kill", "1")  # kernels from 5.14: atomic, no fork race
            except OSError:
                pass
        while pids := self.pids():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise LimitsError(f"cgroup {self.name}: processes {pids} survive SIGKILL; folders left in place")
            time.sleep(0.02)
        for folder in folders:
            # groups below ours (a job with delegated rights may make some) go first
            subdirs = [Path(p) for p, _, _ in os.walk(folder)]
            for d in reversed(subdirs):
                while True:
                    try:
                        _rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as e:
                        # EBUSY for a moment after the last process exited
                        if e.errno != errno.EBUSY or time.monotonic() > deadline:
                            raise LimitsError(f"cannot remove cgroup {d}: {e.strerror}") from e
                        time.sleep(0.02)


class CgroupLimits:
    """Finds a usable cgroup tree once, and makes, finds and sweeps the groups of jobs under ``parent``.

    Detection prefers v2 (``cgroup.controllers`` of the v2 root lists ``cpu``
    and ``memory``, which are then enabled for ``parent``'s children), then v1
    (writable ``memory`` and ``cpu`` hierarchies; ``cpuacct`` too when mounted,
    for CPU seconds). Detection creates the parent folder: being able to is
    what "usable" means. ``v2_root``/``v1_roots`` replace what
    ``/proc/self/mountinfo`` says (tests pass a fake tree; an operator may point
    v2 at a delegated subtree).

    ``parent`` belongs to one platform instance: ``sweep`` removes every group
    under it that the caller does not name.
    """

    def __init__(
        self,
        parent: str = "ai4lab",
        *,
        v2_root: Path | str | None = None,
        v1_roots: Mapping[str, Path | str] | None = None,
        mountinfo: Path | str = "/proc/self/mountinfo",
    ) -> None:
        self.parent = sanitize(parent)
        if v2_root is None and v1_roots is None:
            try:
                v2, v1 = parse_mountinfo(_read(Path(mountinfo)))
            except OSError:
                v2, v1 = None, {}
        else:
            v2 = Path(v2_root) if v2_root is not None else None
            v1 = {k: Path(v) for k, v in (v1_roots or {}).items()}
        self.mode: Mode
        self.description: str
        # controller -> the parent's folder
        self._parent_dirs: dict[str, Path] = {}
        self.mode, self.description = self._detect(v2, v1)

    @property
    def enforced(self) -> bool:
        return self.mode != "none"

    def _detect(self, v2: Path | None, v1: Mapping[str, Path]) -> tuple[Mode, str]:
        problems: list[str] = []
        denied = False
        if v2 is not None:
            try:
                available = set(_read(v2 / "cgroup.controllers").split())
            except OSError as e:
                available, denied = set(), denied or e.errno in (errno.EACCES, errno.EPERM)
                problems.append(f"cgroup v2 at {v2}: {e.strerror}")
            missing = [c for c in ("cpu", "memory") if c not in available]
            if missing and available:
                problems.append(f"cgroup v2 at {v2} has no {' or '.join(missing)} controller")
            elif missing and not v1:
                problems.append(f"cgroup v2 at {v2} has no controllers")
            if not missing:
                try:
                    parent = v2 / self.parent
                    self._enable_v2(v2)
                    if not parent.is_dir():
                        _mkdir(parent)
                    self._enable_v2(parent)
                    self._parent_dirs = dict.fromkeys(_V1_CONTROLLERS, parent)
                    return "v2", "enforced with cgroup v2 (cpu, memory)"
                except OSError as e:
                    denied = denied or e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
                    hint = ""
                    if e.errno == errno.EBUSY:  # a non-root group with processes cannot delegate controllers
                        hint = (
                            " (processes live in that group: give the platform a delegated subtree,"
                            " e.g. systemd Delegate=yes)"
                        )
                    problems.append(f"cgroup v2 at {v2}: {e.strerror}{hint}")
        if "memory" in v1 and "cpu" in v1:
            used = [c for c in _V1_CONTROLLERS if c in v1]
            try:
                dirs = {c: v1[c] / self.parent for c in used}
                for d in dict.fromkeys(dirs.values()):
                    if not d.is_dir():
                        _mkdir(d)
                self._parent_dirs = dirs
                return "v1", "enforced with cgroup v1 (cpu, memory)"
            except OSError as e:
                denied = denied or e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
                problems.append(f"cgroup v1: {e.strerror} ({e.filename})")
        elif v1 or v2 is None:
            have = ", ".join(sorted(v1)) or "none"
            problems.append(f"cgroup v1 needs the memory and cpu hierarchies (mounted: {have})")
        head = "no writable cgroup (not root?)" if denied else "no usable cgroup"
        return "none", f"limits not enforced: {head}: " + "; ".join(problems)

    @staticmethod
    def _enable_v2(folder: Path) -> None:
        """Give ``folder``'s children the cpu and memory controllers (v2 ``cgroup.subtree_control``).

        Why only the missing ones: writing an enabled controller again is
        harmless, but a folder that has processes of its own (not the root)
        refuses any write with EBUSY, and a host's root may have them enabled
        already.
        """
        enabled = set(_read(folder / "cgroup.subtree_control").split())
        missing = [c for c in ("cpu", "memory") if c not in enabled]
        if missing:
            _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))

    def group(self, name: str) -> Group:
        """The group of job ``name`` (which may or may not exist): to read or remove it after a restart."""
        clean = sanitize(name)
        if not self.enforced:
            return Group(clean, "none", {})
        return Group(clean, self.mode, {c: d / clean for c, d in self._parent_dirs.items()})

    def create(self, name: str, cpu: float | None, ram_gb: float | None, cpu_weight: int | None = None) -> Group:
        """Make the group of job ``name`` with its limits, ready for ``Group.join``.

        - ``cpu``: cores (1.5 = one and a half); a CFS quota per 100 ms period.
        - ``ram_gb``: memory in GB (2**30 bytes). Swap is included in the limit
          (v2 ``memory.swap.max`` 0; v1 ``memory.memsw.limit_in_bytes`` equal to
          the memory limit, or ``memory.swappiness`` 0 where the kernel does not
          account swap), so a job cannot dodge the limit by swapping.
        - ``cpu_weight``: share of the CPU under contention, v2 scale 1-10000
          (100 is the default; v1 ``cpu.shares`` = weight * 1024 / 100): to keep
          the hub ahead of user servers.

        ``None`` leaves that resource unlimited; the group is still made, so the
        job's processes are accounted and killed together. A group of the same
        name left from an earlier run is removed first (its processes killed),
        so the new job starts with fresh counters.
        """
        if cpu is not None and cpu <= 0:
            raise ValueError(f"cpu must be a positive number of cores, not {cpu}")
        if ram_gb is not None and ram_gb <= 0:
            raise ValueError(f"ram_gb must be a positive number of GB, not {ram_gb}")
        if cpu_weight is not None and not 1 <= cpu_weight <= 10_000:
            raise ValueError(f"cpu_weight must be between 1 and 10000 (100 is the default), not {cpu_weight}")
        group = self.group(name)
        if not self.enforced:
            return group
        if group.exists():
            log.warning("cgroup %s exists from an earlier run; removing it", group.name)
            group.remove()
        try:
            for folder in group.folders:
                _mkdir(folder)
            if self.mode == "v2":
                self._limit_v2(group, cpu, ram_gb, cpu_weight)
            else:
                self._limit_v1(group, cpu, ram_gb, cpu_weight)
        except OSError as e:
            try:
                group.remove()
            except LimitsError:
                pass
            raise LimitsError(f"cannot set up cgroup {group.name}: {e.strerror} ({e.filename})") from e
        return group

    @staticmethod
    def _limit_v2(group: Group, cpu: float | None, ram_gb: float | None, cpu_weight: int | None) -> None:
        (folder,) = group.folders
        if ram_gb is not None:
            _write(folder / "memory.max", str(int(ram_gb * GB)))
            if (folder / "memory.swap.max").exists():  # absent when the kernel does not account swap
                _write(folder / "memory.swap.max", "0")
        quota = "max" if cpu is None else str(max(_MIN_QUOTA_US, round(cpu * CFS_PERIOD_US)))
        _write(folder / "cpu.max", f"{quota} {CFS_PERIOD_US}")
        if cpu_weight is not None:
            _write(folder / "cpu.weight", str(cpu_weight))

    @staticmethod
    def _limit_v1(group: Group, cpu: float | None, ram_gb: float | None, cpu_weight: int | None) -> None:
        mem, cpu_dir = group._dirs["memory"], group._dirs["cpu"]
        if ram_gb is not None:
            limit = str(int(ram_gb * GB))
            # memory first: memsw may never be below it
            _write(mem / "memory.limit_in_bytes", limit)
            if (mem / "memory.memsw.limit_in_bytes").exists():
                _write(mem / "memory.memsw.limit_in_bytes", limit)
            else:
                _write(mem / "memory.swappiness", "0")
        _write(cpu_dir / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        quota = -1 if cpu is None else max(_MIN_QUOTA_US, round(cpu * CFS_PERIOD_US))
        _write(cpu_dir / "cpu.cfs_quota_us", str(quota))
        if cpu_weight is not None:
            _write(cpu_dir / "cpu.shares", str(max(2, round(cpu_weight * 1024 / 100))))

    def names(self) -> list[str]:
        """Names of the groups under the parent (in any hierarchy)."""
        found: set[str] = set()
        for d in dict.fromkeys(self._parent_dirs.values()):
            try:
                found.update(e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                pass
        return sorted(found)

    def sweep(self, keep: Iterable[str]) -> list[str]:
        """Remove every group under the parent except those of ``keep`` (job names, raw or sanitised).

        Why: a hub that crashed, or a machine where the platform was killed,
        leaves groups (and maybe processes) behind. Call at start-up with the
        names of the jobs the platform still knows as running (and of the hub's
        own group if it has one). Returns the names removed; a group that cannot
        be removed is logged and left.
        """
        wanted = {sanitize(n) for n in keep}
        removed = []
        for name in self.names():
            if name in wanted:
                continue
            try:
                self.group(name).remove()
                removed.append(name)
            except LimitsError as e:
                log.warning("stale %s", e)
        return removed

    def teardown(self) -> None:
        """Remove every group and then the parent folder itself (tests, uninstall)."""
        if not self.enforced:
            return
        for name in self.names():
            self.group(name).remove()
        for d in dict.fromkeys(self._parent_dirs.values()):
            try:
                _rmdir(d)
            except FileNotFoundError:
                pass
