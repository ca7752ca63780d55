"""ai4lab.backends.local.LocalBackend with real process trees."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from ai4lab.backends.base import JobSpec, JobStatus
from ai4lab.backends.local import LocalBackend, kill_tree
from ai4lab.core.isolation import Accounts
from ai4lab.core.limits import CgroupLimits

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
#: process-tree behaviour is the same in both modes; these tests run jobs as the test's own user
SHARED = Accounts(enabled=False)


def gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_for(pred, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def wait_exit(backend: LocalBackend, state: dict[str, Any], timeout: float = 10) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        st = await backend.status(state)
        if not st.running:
            return st
        if time.monotonic() > deadline:
            raise AssertionError("job did not exit in time")
        await asyncio.sleep(0.02)


def killpg_quietly(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def test_stop_kills_whole_tree(tmp_path: Path) -> None:
    b = LocalBackend(SHARED)
    state = await b.submit(
        JobSpec(
            name="tree",
            command=["sh", "-c", "echo job-started; sleep 300 & sleep 300; wait"],
            env=ENV,
            cwd=tmp_path / "work",
        )
    )
    pid = state["pid"]
    try:
        assert set(state) >= {"pid", "create_time", "log_path"}
        assert Path(state["log_path"]) == tmp_path / "work" / "tree.log"
        assert (tmp_path / "work").is_dir()
        # the job leads its own session / process group
        assert os.getsid(pid) == pid and os.getpgid(pid) == pid

        root = psutil.Process(pid)
        await wait_for(lambda: len(root.children(recursive=True)) >= 2)
        kids = [p.pid for p in root.children(recursive=True)]
        assert all(os.getpgid(k) == pid for k in kids)

        assert await b.status(state) == JobStatus(running=True)
        await wait_for(lambda: "job-started" in Path(state["log_path"]).read_text())
        assert "job-started" in await b.logs(state)

        await b.stop(state, timeout=5)
        for p in (pid, *kids):
            assert gone(p), f"pid {p} survived stop"
        st = await b.status(state)
        assert st.running is False
    finally:
        killpg_quietly(pid)


async def test_status_after_stop_has_exit_code(tmp_path: Path) -> None:
    b = LocalBackend(SHARED)
    state = await b.submit(JobSpec(name="s", command=["sleep", "300"], env=ENV, cwd=tmp_path))
    try:
        await b.stop(state, timeout=5)
        st = await b.status(state)
        assert st.running is False
        assert st.exit_code is not None
    finally:
        killpg_quietly(state["pid"])


async def test_job_exiting_by_itself_reports_exit_code(tmp_path: Path) -> None:
    b = LocalBackend(SHARED)
    log = tmp_path / "logs" / "deep" / "k.log"
    state = await b.submit(
        JobSpec(name="k", command=["sh", "-c", "echo out; echo err >&2; exit 3"], env=ENV, log_path=log)
    )
    st = await wait_exit(b, state)
    assert st == JobStatus(running=False, exit_code=3, reason="exited with code 3")
    assert state["log_path"] == str(log)
    text = await b.logs(state)
    assert "out\n" in text and "err\n" in text  # stderr goes to the same log
    # stopping a job that has already exited is harmless
    await b.stop(state)
    assert (await b.status(state)).running is False


async def test_successful_job_exit_code_zero(tmp_path: Path) -> None:
    b = LocalBackend(SHARED)
    state = await b.submit(JobSpec(name="ok", command=["true"], env=ENV, cwd=tmp_path))
    st = await wait_exit(b, state)
    assert (st.running, st.exit_code) == (False, 0)


async def test_logs_tail_and_append(tmp_path: Path) -> None:
    b = LocalBackend(SHARED)
    spec = JobSpec(name="t", command=["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done"],
                   env=ENV, cwd=tmp_path)
    state = await b.submit(spec)
    await wait_exit(b, state)
    assert await b.logs(state, tail=2) == "line4\nline5\n"
    assert (await b.logs(state)).splitlines() == [f"line{i}" for i in range(1, 6)]
    # a resubmission appends to the same log instead of truncating it
    state2 = await b.submit(spec)
    await wait_exit(b, state2)
    assert (await b.logs(state2)).count("line1") == 2
    assert await b.logs({"log_path": str(tmp_path / "missing.log")}) == ""
    assert await b.logs({}) == ""


@pytest.mark.parametrize(
    ("gpu_ids", "env", "expected"),
    [
        (["0", "2"], {}, "0,2"),
        (["GPU-abc"], {"CUDA_VISIBLE_DEVICES": "7"}, "GPU-abc"),  # gpu_ids win
        ([], {}, ""),  # no GPU: explicitly hidden
        ([], {"CUDA_VISIBLE_DEVICES": "5"}, "5"),  # caller's value kept
    ],
)
async def test_cuda_visible_devices(tmp_path: Path, gpu_ids: list[str], env: dict[str, str], expected: str) -> None:
    b = LocalBackend(SHARED)
    state = await b.submit(
        JobSpec(
            name="cuda",
            command=["sh", "-c", 'echo "cvd=[${CUDA_VISIBLE_DEVICES-unset}] foo=[$FOO]"'],
            env={**ENV, **env, "FOO": "bar"},
            cwd=tmp_path,
            gpu_ids=gpu_ids,
        )
    )
    assert (await wait_exit(b, state)).exit_code == 0
    assert (await b.logs(state)).strip() == f"cvd=[{expected}] foo=[bar]"


async def test_job_does_not_inherit_platform_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI4LAB_SECRET_FOR_TEST", "leak")
    b = LocalBackend(SHARED)
    state = await b.submit(
        JobSpec(name="env", command=["sh", "-c", 'echo "s=[$AI4LAB_SECRET_FOR_TEST]"'], env=ENV, cwd=tmp_path)
    )
    await wait_exit(b, state)
    assert (await b.logs(state)).strip() == "s=[]"


async def test_status_from_fresh_backend_after_restart(tmp_path: Path) -> None:
    b1 = LocalBackend(SHARED)
    state = await b1.submit(JobSpec(name="r", command=["sleep", "300"], env=ENV, cwd=tmp_path))
    try:
        b2 = LocalBackend(SHARED)  # e.g. the platform restarted: only the stored state is known
        assert (await b2.status(state)).running is True
        # a recycled pid (different start time) is not the job
        other = dict(state, create_time=state["create_time"] - 1000, start_ticks=state["start_ticks"] - 100_000)
        assert (await b2.status(other)).running is False
        await b2.stop(other, timeout=1)
        assert not gone(state["pid"])  # the wrong-start-time stop left the real job alone
        await b2.stop(state, timeout=5)
        await wait_for(lambda: b1._children[state["pid"]].poll() is not None)
        assert (await b2.status(state)) == JobStatus(running=False, reason="process is gone")
    finally:
        killpg_quietly(state["pid"])
        b1._children[state["pid"]].wait(timeout=5)


async def test_stop_without_pid_is_noop() -> None:
    await LocalBackend(SHARED).stop({})


def test_kill_tree_on_missing_pid_is_noop() -> None:
    kill_tree(2**22 + 12345)  # beyond any real pid: nothing to do, no error


async def test_stop_reaches_orphans_of_exited_leader(tmp_path: Path) -> None:
    b = LocalBackend(SHARED)
    state = await b.submit(
        JobSpec(name="orphan", command=["sh", "-c", "sleep 300 & echo child=$!; exit 0"], env=ENV, cwd=tmp_path)
    )
    pgid = state["pid"]
    try:
        assert (await wait_exit(b, state)).exit_code == 0
        m = re.search(r"child=(\d+)", await b.logs(state))
        assert m
        child = int(m.group(1))
        assert not gone(child)
        await b.stop(state, timeout=2)
        await asyncio.sleep(0.2)
        assert gone(child), "a process of the stopped job is still running"
    finally:
        killpg_quietly(pgid)


limits_here = pytest.mark.skipif(not CgroupLimits().enforced, reason="no writable cgroup (not root?)")


@pytest.fixture
def limited(request: pytest.FixtureRequest) -> LocalBackend:
    limits = CgroupLimits(f"ai4lab-test-backend-{os.getpid()}")
    request.addfinalizer(limits.teardown)
    return LocalBackend(SHARED, limits)


@limits_here
async def test_a_job_over_its_memory_is_killed_with_the_reason(tmp_path: Path, limited: LocalBackend) -> None:
    hog = "b = bytearray(3 * 2**30); import time; time.sleep(30)"  # 3 GB, pages touched by the zero fill
    state = await limited.submit(JobSpec(name="hog", command=[sys.executable, "-c", hog], env=ENV, cwd=tmp_path,
                                         cpu=1, ram_gb=1))
    assert state["cgroup"]
    st = await wait_exit(limited, state, timeout=60)
    assert st.reason == "out of memory: limit 1 GB" and st.exit_code == -signal.SIGKILL
    assert not limited.limits.group(state["cgroup"]).exists(), "the job's cgroup is removed when it ends"


@limits_here
async def test_a_cpu_bound_job_limited_to_one_core_does_not_get_two(tmp_path: Path, limited: LocalBackend) -> None:
    burn = "import multiprocessing as m, time\n" \
           "def spin():\n    while True: pass\n" \
           "if __name__ == '__main__':\n    [m.Process(target=spin).start() for _ in range(2)]\n    time.sleep(60)\n"
    script = tmp_path / "burn.py"
    script.write_text(burn)
    state = await limited.submit(JobSpec(name="burn", command=[sys.executable, str(script)], env=ENV, cwd=tmp_path,
                                         cpu=1, ram_gb=1))
    try:
        group = limited.limits.group(state["cgroup"])
        await asyncio.sleep(1)
        before, t0 = group.usage().cpu_seconds, time.monotonic()
        await asyncio.sleep(3)
        cores = (group.usage().cpu_seconds - before) / (time.monotonic() - t0)
        assert cores < 1.3, f"{cores:.2f} cores used under a 1-core limit"
    finally:
        await limited.stop(state, timeout=2)
    assert not limited.limits.group(state["cgroup"]).exists()


# -- secrets --------------------------------------------------------------------------


async def test_secrets_as_environment_never_override_the_platform(tmp_path: Path) -> None:
    """Given as variables of their names; a secret cannot take the place of a variable the platform sets."""
    b = LocalBackend(SHARED)
    out = tmp_path / "env.txt"
    spec = JobSpec(
        name="secrets-env",
        command=[sys.executable, "-c", f"import os, json; open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))"],
        env={**ENV, "FROM_PLATFORM": "platform"},
        cwd=tmp_path,
        secrets={"HF_TOKEN": "hf-value", "FROM_PLATFORM": "secret"},
    )
    assert "hf-value" not in repr(spec)  # a spec in a log shows no value
    state = await b.submit(spec)
    assert (await wait_exit(b, state)).exit_code == 0
    import json

    env = json.loads(out.read_text())
    assert env["HF_TOKEN"] == "hf-value" and env["FROM_PLATFORM"] == "platform"
    assert "AI4LAB_SECRETS_DIR" not in env and "secrets_dir" not in state


async def test_secrets_as_files_are_private_and_removed_when_the_job_ends(tmp_path: Path) -> None:
    b = LocalBackend(SHARED)
    out = tmp_path / "seen.txt"
    code = (
        "import os, stat\n"
        "d = os.environ['AI4LAB_SECRETS_DIR']\n"
        "f = os.path.join(d, 'HF_TOKEN')\n"
        f"open({str(out)!r}, 'w').write('%s %o %o %s %s' % (open(f).read(), stat.S_IMODE(os.stat(d).st_mode), "
        "stat.S_IMODE(os.stat(f).st_mode), 'HF_TOKEN' in os.environ, d))\n"
        "import time; time.sleep(30)\n"
    )
    state = await b.submit(
        JobSpec(name="secrets-files", command=[sys.executable, "-c", code], env=ENV, cwd=tmp_path,
                secrets={"HF_TOKEN": "line1\nline2"}, secrets_as="files")
    )
    folder = Path(state["secrets_dir"])
    await wait_for(lambda: out.exists() and out.read_text().endswith(str(folder)))
    value_and_modes = out.read_text().removesuffix(f" {folder}")
    assert value_and_modes == "line1\nline2 700 600 False"
    assert folder.parent == Path("/dev/shm")  # in memory, not on a disk
    await b.stop(state, timeout=2)
    assert not folder.exists()

    # a job that ends by itself: the status that finds it ended removes the folder
    state = await b.submit(
        JobSpec(name="secrets-files-2", command=[sys.executable, "-c", "pass"], env=ENV, cwd=tmp_path,
                secrets={"A": "b"}, secrets_as="files")
    )
    folder = Path(state["secrets_dir"])
    assert (folder / "A").read_text() == "b"
    await wait_exit(b, state)
    assert not folder.exists()


async def test_secrets_folder_removed_when_the_job_cannot_start(tmp_path: Path) -> None:
    import glob
    import secrets

    value = secrets.token_hex(16)  # found again among other jobs' folders by its value only
    b = LocalBackend(SHARED)
    with pytest.raises(OSError):
        await b.submit(JobSpec(name="no-such", command=[str(tmp_path / "missing")], env=ENV, cwd=tmp_path,
                               secrets={"UNSTARTED": value}, secrets_as="files"))
    left = [f for f in glob.glob("/dev/shm/ai4lab-secrets-*/UNSTARTED") if Path(f).read_text() == value]
    assert left == []


async def test_jobs_run_below_the_platforms_cpu_priority(tmp_path: Path) -> None:
    """User code is niced (``job_nice``), so that the hub and the API keep answering while it computes."""
    b = LocalBackend(SHARED, nice=7)
    state = await b.submit(JobSpec(name="niced", command=["sh", "-c", "sleep 300 & wait"], env=ENV, cwd=tmp_path))
    try:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, state["pid"]) == min(19, mine + 7)
        root = psutil.Process(state["pid"])
        await wait_for(lambda: len(root.children()) == 1)
        assert root.children()[0].nice() == min(19, mine + 7)  # what the job starts inherits it
    finally:
        await b.stop(state, timeout=5)
        killpg_quietly(state["pid"])


async def test_stop_asks_with_the_jobs_stop_signal_first(tmp_path: Path) -> None:
    """A job that ends on SIGINT and ignores SIGTERM (deepaas-run) stops at once with stop_signal=SIGINT."""
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "def stop(*a):\n"
        "    print('stopping on SIGINT', flush=True)\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    b = LocalBackend(SHARED)
    for sig, fast in ((signal.SIGINT, True), (signal.SIGTERM, False)):
        log = tmp_path / f"{sig}.log"
        state = await b.submit(JobSpec(name="s", command=[sys.executable, "-c", code], env=ENV, cwd=tmp_path,
                                       log_path=log, stop_signal=sig))
        try:
            await wait_for(lambda: "ready" in log.read_text())
            await b.stop(state, timeout=3)
            assert gone(state["pid"])
            # asked with SIGINT it ends by itself; SIGTERM is ignored and the stop ends in SIGKILL
            assert ("stopping on SIGINT" in log.read_text()) is fast
        finally:
            killpg_quietly(state["pid"])
