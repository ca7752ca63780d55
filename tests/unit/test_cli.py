"""The ``ai4lab`` command line, run as a real subprocess against a state folder in tmp_path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ai4lab.core import accounts

AI4LAB = Path(sys.executable).parent / "ai4lab"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_env(tmp: Path) -> dict[str, str]:
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AI4LAB_", "JUPYTERHUB_"))
        and k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    }
    e.update(
        AI4LAB_STATE_DIR=str(tmp / "state"),
        AI4LAB_CONFIG=str(tmp / "no-such-config.yaml"),
        # nothing listens there, whatever else runs on this machine
        AI4LAB_PORT=str(_free_port()),
        # a standard 80-column terminal, so that the output does not depend on where tests run
        COLUMNS="80",
    )
    return e


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AI4LAB), *args], env=env, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, cwd=Path(env["AI4LAB_STATE_DIR"]).parent,
    )


def db_users(env: dict[str, str]) -> list[tuple[str, str, bool]]:
    """The accounts as stored, read in-process from the CLI's database."""
    url = f"sqlite:///{Path(env['AI4LAB_STATE_DIR']).resolve() / 'ai4lab.sqlite'}"
    return [(u.name, u.role, u.is_admin) for u in accounts.list_users(url)]


def assert_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode != 0, r
    assert r.stderr.startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    flat = " ".join(r.stderr.split())
    for n in needles:
        assert n in flat, r.stderr


def assert_one_line(r: subprocess.CompletedProcess[str]) -> None:
    assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1, repr(r.stderr)


class Cli:
    """A state folder holding user alice, shared by the tests of this module that do not change it.

    Each command line is run once and its result reused, since every run costs about a second.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = make_env(tmp)
        self._cache: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = {}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        if args not in self._cache:
            self._cache[args] = run(self.env, *args)
        return self._cache[args]


USER_ERRORS = [
    (["users", "add", "bob", "--password", "password1", "--role", "root"],
     ["unknown role 'root': choose one of basic, intermediate, advanced"]),
    (["users", "add", "bob", "--password", "short"], ["password too short"]),
    (["users", "add", "alice", "--password", "password1"], ["user 'alice' exists already"]),
    (["users", "set", "nobody", "--role", "advanced"], ["no user 'nobody'"]),
    (["users", "set", "alice", "--role", "boss"], ["unknown role 'boss'"]),
]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    c = Cli(tmp_path_factory.mktemp("cli"))
    r = run(c.env, "users", "add", "alice", "--password", "password1", "--role", "intermediate")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "added alice (intermediate)"
    assert r.stderr == ""
    assert (c.tmp / "state" / "ai4lab.sqlite").is_file()
    return c


ALICE = [("alice", "intermediate", False)]


def test_users_list_json(cli: Cli) -> None:
    r = cli("users", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"name": "alice", "role": "intermediate", "admin": False}]


def test_users_add_and_set(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    r = run(env, "users", "add", "bob", "--password", "password2", "--admin")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "added bob (basic, admin)"
    assert db_users(env) == [("bob", "basic", True)]

    r = run(env, "users", "set", "bob", "--role", "advanced", "--no-admin")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "updated bob"
    assert db_users(env) == [("bob", "advanced", False)]

    r = run(env, "users", "set", "bob", "--password", "new-password")
    assert r.returncode == 0, r.stderr
    url = f"sqlite:///{(tmp_path / 'state').resolve() / 'ai4lab.sqlite'}"
    assert accounts.authenticate(url, "bob", "new-password") is not None
    assert accounts.authenticate(url, "bob", "password2") is None


@pytest.mark.parametrize(
    ("args", "needles"), USER_ERRORS,
    ids=["bad-role", "short-password", "duplicate", "set-unknown-user", "set-bad-role"],
)
def test_users_errors_are_one_line(cli: Cli, args: list[str], needles: list[str]) -> None:
    r = cli(*args)
    assert_error(r, *needles)
    assert_one_line(r)
    assert r.stdout == ""
    assert db_users(cli.env) == ALICE  # nothing changed


def test_users_add_bad_name(cli: Cli) -> None:
    r = cli("users", "add", "Bob", "--password", "password1")
    assert_error(r, "invalid user name 'Bob'")
    assert db_users(cli.env) == ALICE


def test_users_add_bad_name_is_one_line(cli: Cli) -> None:
    r = cli("users", "add", "Bob", "--password", "password1")
    assert_error(r, "invalid user name 'Bob'")
    assert_one_line(r)


def test_config_show_json(cli: Cli) -> None:
    r = cli("config", "show", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    state = str((cli.tmp / "state").resolve())
    assert data["state_dir"] == state
    assert data["database_url"] == f"sqlite:///{state}/ai4lab.sqlite"
    assert data["port"] == int(cli.env["AI4LAB_PORT"])
    assert set(data["quotas"]) == {"basic", "intermediate", "advanced"}


def test_config_reference(cli: Cli) -> None:
    r = cli("config", "reference")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("### Platform settings")
    assert "| `state_dir` | `AI4LAB_STATE_DIR` |" in r.stdout
    assert "|---|---|---|---|" in r.stdout
    assert "### Spawner" in r.stdout and "c.LocalSessionSpawner." in r.stdout


def test_status_when_nothing_runs(cli: Cli) -> None:
    r = cli("status")
    assert r.returncode == 1
    assert "hub: down" in r.stdout
    assert "1 user(s), 0 active deployment(s)" in r.stdout


def test_status_json_when_nothing_runs(cli: Cli) -> None:
    r = cli("status", "--json")
    assert r.returncode == 1
    info = json.loads(r.stdout)
    assert info["services"] == {"hub": "down", "api": "down", "mlflow": "down"}
    assert info["users"] == 1 and info["active_deployments"] == []
    assert info["url"] == f"http://127.0.0.1:{cli.env['AI4LAB_PORT']}"


@pytest.fixture(scope="module")
def bad_port(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    c = Cli(tmp_path_factory.mktemp("badport"))
    cfg = c.tmp / "ai4lab.yaml"
    cfg.write_text('port: "abc"\n')
    c.env["AI4LAB_CONFIG"] = str(cfg)
    del c.env["AI4LAB_PORT"]
    return c


@pytest.mark.parametrize("args", [["users", "list"], ["config", "show"]])
def test_invalid_yaml_setting(bad_port: Cli, args: list[str]) -> None:
    r = bad_port(*args)
    assert_error(r, "invalid setting port:", "check ai4lab.yaml or AI4LAB_* variables")
    assert r.returncode == 2
    assert r.stdout == ""


def test_invalid_yaml_setting_is_one_line(bad_port: Cli) -> None:
    r = bad_port("config", "show")
    assert_error(r, "invalid setting port")
    assert_one_line(r)


def test_single_user_mode_refuses_a_second_user_unless_acknowledged(tmp_path: Path) -> None:
    env = {**make_env(tmp_path), "AI4LAB_ISOLATION": "off"}
    assert run(env, "users", "add", "first", "--password", "a long password").returncode == 0
    r = run(env, "users", "add", "second", "--password", "a long password")
    assert_error(r, "single-user mode", "could read their files", "allow_shared_single_user")
    assert_one_line(r)
    assert [u[0] for u in db_users(env)] == ["first"], "a refused account must not be stored"
    assert run(env, "users", "add", "ops", "--password", "a long password", "--admin").returncode == 0
    ack = {**env, "AI4LAB_ALLOW_SHARED_SINGLE_USER": "1"}
    assert run(ack, "users", "add", "second", "--password", "a long password").returncode == 0
    status = run(env, "status", "--json")
    assert "single-user mode: sessions run as" in status.stdout


# -- users password ------------------------------------------------------------------------


def url_of(env: dict[str, str]) -> str:
    return f"sqlite:///{Path(env['AI4LAB_STATE_DIR']).resolve() / 'ai4lab.sqlite'}"


@pytest.fixture
def carol(tmp_path: Path) -> dict[str, str]:
    env = make_env(tmp_path)
    r = run(env, "users", "add", "carol", "--password", "old-password")
    assert r.returncode == 0, r.stderr
    return env


def test_users_password_given(carol: dict[str, str]) -> None:
    r = run(carol, "users", "password", "carol", "--password", "new-password")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "password of carol changed"
    assert "new-password" not in r.stdout + r.stderr
    assert accounts.authenticate(url_of(carol), "carol", "new-password") is not None
    assert accounts.authenticate(url_of(carol), "carol", "old-password") is None


def test_users_password_generated_when_not_interactive(carol: dict[str, str]) -> None:
    r = run(carol, "users", "password", "carol")  # stdin is /dev/null: nobody to ask
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("new password of carol: ") and r.stdout.count("\n") == 1
    password = r.stdout.split(": ", 1)[1].strip()
    assert len(password) >= 12
    assert accounts.authenticate(url_of(carol), "carol", password) is not None
    assert accounts.authenticate(url_of(carol), "carol", "old-password") is None
    # generated anew each time, and never written into the state folder
    again = run(carol, "users", "password", "carol", "--generate").stdout.split(": ", 1)[1].strip()
    assert again != password
    state = Path(carol["AI4LAB_STATE_DIR"])
    for f in state.rglob("*"):
        if f.is_file():
            assert again.encode() not in f.read_bytes(), f


def test_users_password_asks_on_a_terminal(carol: dict[str, str]) -> None:
    """On a terminal the password is typed twice (hidden), as for ``users add``; nothing is printed back."""
    import fcntl
    import pty
    import select
    import termios
    import time

    master, slave = pty.openpty()

    def controlling_tty() -> None:  # getpass reads /dev/tty: make the pty this process's terminal
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([str(AI4LAB), "users", "password", "carol"], env=carol, stdin=slave, stdout=slave,
                            stderr=slave, preexec_fn=controlling_tty, cwd=Path(carol["AI4LAB_STATE_DIR"]).parent)
    os.close(slave)
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while marker not in seen:
            assert time.monotonic() < deadline, seen
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 1024)
                except OSError:  # the other side closed
                    return

    try:
        read_until(b"New password:")
        os.write(master, b"typed-password\n")
        read_until(b"confirmation:")
        os.write(master, b"typed-password\n")
        read_until(b"changed")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        os.close(master)
    assert b"password of carol changed" in seen
    assert b"typed-password" not in seen  # hidden input
    assert accounts.authenticate(url_of(carol), "carol", "typed-password") is not None


@pytest.mark.parametrize(("args", "needles"), [
    (["users", "password", "nobody"], ["no user 'nobody'", "ai4lab users add"]),
    (["users", "password", "nobody", "--password", "long-enough"], ["no user 'nobody'"]),
    (["users", "password", "alice", "--password", "short"], ["password too short"]),
    (["users", "password", "alice", "--password", "long-enough", "--generate"], ["not both"]),
], ids=["unknown", "unknown-with-password", "short", "both"])
def test_users_password_errors_are_one_line(cli: Cli, args: list[str], needles: list[str]) -> None:
    r = cli(*args)
    assert_error(r, *needles)
    assert_one_line(r)
    assert r.stdout == ""
    assert accounts.authenticate(url_of(cli.env), "alice", "password1") is not None  # unchanged
