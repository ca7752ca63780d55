"""Per-user system accounts and the launcher that drops privileges (real ``useradd``, real processes, as root)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from ai4lab.core import isolation
from ai4lab.backends.base import JobSpec
from ai4lab.backends.local import LocalBackend
from ai4lab.core.isolation import Accounts, IsolationError, system_name

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="per-user accounts need root")


def test_system_names_are_valid_and_distinct() -> None:
    assert system_name("alice", "ai4-") == "ai4-alice"
    assert system_name("Alice", "ai4-") != system_name("alice", "ai4-")
    odd = system_name("ünïcode user@example.org", "ai4-")
    assert odd.startswith("ai4-") and len(odd) <= 32 and odd.isascii()
    long = system_name("x" * 80, "ai4-")
    assert len(long) <= 32 and long != system_name("x" * 79, "ai4-")
    with pytest.raises(IsolationError, match="prefix"):
        system_name("alice", "9bad ")


def test_single_user_mode_maps_everyone_to_the_platform_user() -> None:
    acc = Accounts(enabled=False)
    assert acc.ensure("alice").uid == os.geteuid()
    assert acc.ensure("bob").uid == os.geteuid()
    assert acc.nobody().uid == os.geteuid()


@root_only
def test_accounts_are_created_once_in_the_range(tmp_path: Path) -> None:
    acc = Accounts(enabled=True, prefix="ai4t-")
    a = acc.ensure("iso-alice", home=tmp_path)
    assert a.name == "ai4t-iso-alice" and 20000 <= a.uid <= 29999 and a.gid == pwd.getpwnam(a.name).pw_gid
    again = Accounts(enabled=True, prefix="ai4t-").ensure("iso-alice")
    assert again.uid == a.uid
    b = acc.ensure("iso-bob")
    assert b.uid != a.uid


@root_only
def test_a_foreign_user_with_our_name_is_not_taken_over() -> None:
    acc = Accounts(enabled=True, prefix="", uid_min=20000, uid_max=29999)
    with pytest.raises(IsolationError, match="outside ai4lab's range"):
        acc.ensure("root")


@root_only
async def test_jobs_run_as_their_owner_with_a_clean_environment(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    os.chmod(tmp_path, 0o711)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "platform-secret-token")
    backend = LocalBackend(Accounts(enabled=True, prefix="ai4t-"))
    work = tmp_path / "work"
    secret = tmp_path / "secrets.json"
    secret.write_text("{}")
    os.chmod(secret, 0o600)
    state = await backend.submit(JobSpec(
        name="who", owner="iso-alice", cwd=work, env={"PATH": "/usr/bin:/bin", "X": "1"},
        command=["sh", "-c", f"id -u; umask; env; touch mine; cat {secret} || echo DENIED"],
        log_path=tmp_path / "who.log"))
    for _ in range(200):
        if not (await backend.status(state)).running:
            break
        await asyncio.sleep(0.05)
    out = (tmp_path / "who.log").read_text()
    alice = pwd.getpwnam("ai4t-iso-alice")
    assert out.splitlines()[0] == str(alice.pw_uid)
    assert "0077" in out
    assert "DENIED" in out and "Permission denied" in out
    assert "platform-secret-token" not in out and "X=1" in out and f"HOME={work}" in out
    assert state["uid"] == alice.pw_uid
    st = work.stat()
    assert st.st_uid == alice.pw_uid and stat.S_IMODE(st.st_mode) == 0o700
    assert (work / "mine").stat().st_uid == alice.pw_uid


@root_only
async def test_a_job_without_owner_is_refused_when_isolating(tmp_path: Path) -> None:
    backend = LocalBackend(Accounts(enabled=True, prefix="ai4t-"))
    with pytest.raises(IsolationError, match="without an owner"):
        await backend.submit(JobSpec(name="x", command=["true"], cwd=tmp_path))


@root_only
def test_run_once_as_nobody_cannot_read_private_files(tmp_path: Path) -> None:
    private = tmp_path / "private.txt"
    private.write_text("secret")
    os.chmod(private, 0o600)
    os.chmod(tmp_path, 0o711)
    nobody = Accounts(enabled=True).nobody()
    proc = isolation.run(nobody, ["cat", str(private)], env=isolation.user_env(nobody, "/"), cwd=Path("/"))
    assert proc.returncode != 0 and "Permission denied" in proc.stderr


@root_only
def test_private_dirs_belong_to_the_user(tmp_path: Path) -> None:
    ident = Accounts(enabled=True, prefix="ai4t-").ensure("iso-alice")
    base = tmp_path / "storage"
    base.mkdir()
    made = isolation.private_dir(base / "iso-alice" / "models" / "x", ident, base)
    for p in (base / "iso-alice", base / "iso-alice" / "models", made):
        assert p.stat().st_uid == ident.uid and stat.S_IMODE(p.stat().st_mode) == 0o700
    assert base.stat().st_uid == 0


def test_reachable_by_others() -> None:
    top = Path(tempfile.mkdtemp(prefix="ai4lab-reach-"))
    try:
        inner = top / "a" / "b"
        inner.mkdir(parents=True)
        os.chmod(top, 0o711)
        os.chmod(top / "a", 0o700)
        assert isolation.reachable_by_others(inner) == top / "a"
        os.chmod(top / "a", 0o711)
        os.chmod(inner, 0o711)
        assert isolation.reachable_by_others(inner) is None
    finally:
        shutil.rmtree(top)


@root_only
def test_the_runtime_python_is_runnable_by_user_accounts() -> None:
    """The interpreter environments are built from must not live below /root (pyenv's does)."""
    from ai4lab.core.runtime import default_user_python

    python = default_user_python()
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(python), "-c",
                           "print('ok')"], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr
