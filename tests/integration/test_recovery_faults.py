"""Fault tests of the deployment lifecycle's recovery: the platform API is killed (SIGKILL) while deployments run.

The API's part is played by ``tests/integration/recovery_api.py``: a process that recovers, creates one
deployment and watches, as the API's lifespan does. Each test kills it at a point of the run, starts a
second one that only recovers and watches, and checks the outcome against what the run left behind
(issue 15: a training that finished while the API was down was marked failed).

Kill points, per kind:

- ``early``: right after ``create`` returned;
- ``after-launch``: the API dies right after the backend launched the job's process, before
  anything recorded it (the process is found by its ``AI4LAB_JOB`` variable). Both APIs run their
  jobs without cgroups here, as on a machine without usable ones: with them, the new launch's cgroup
  setup would end the leftover process as a side effect and hide a recovery that forgot it;
- ``random``: the API dies a random time after it launched the job's process (drawn from a seeded
  ``random.Random``, up to a span that covers the start-up and some of the run of each kind).

The platform then stays down for a random time (up to 2 s), except: a training or batch job killed at
a random point stays down until the job ended (recovery reads back what it left; in the other cases the
recovered API watches a process that is not its child end, issue 15's path); a Flower server launched
but not recorded stays down until that server wrote its status file (the server started again must
not pass for running on it). The seed, the delay and the downtime are printed (pytest shows them with
a failure), with the time line of the run; ``AI4LAB_FAULT_SEED=<seed>`` replays the same draws.

No hub: a small fake answers the one call the lifecycles make to it (a process token for MLflow);
MLflow is a real ``mlflow server`` at the platform's public URL, where the gateway serves it (only
trainings need it: they come last, so that it boots while the servers are tested). One state folder
for the module; each kind has its own user (``fault-*``), which no other test uses.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ai4lab.api.mlflow_gateway import mlflow_command
from ai4lab.backends.local import JOB_MARK, LocalBackend, _same_process
from ai4lab.core import accounts, db
from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment
from ai4lab.core.envs import ensure_env, env_bin
from ai4lab.core.isolation import Accounts
from ai4lab.core.limits import CgroupLimits
from ai4lab.core.settings import Settings, bundled_catalog_path
from ai4lab.core.storage import OwnedStorage
from ai4lab.deploy.lifecycle import Platform
from ai4lab.deploy.registry import Registry
from ai4lab.deploy.tools import FlowerTool
from ai4lab.jhub.hubconfig import prepare_state
from tests.platform_harness import free_port, reachable_state, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("recovery-faults")]
ROOT = Path(__file__).resolve().parents[2]
CASES = ("early", "after-launch", "random")
DIGITS = bundled_catalog_path() / "modules" / "ai4lab-digits"


# -- the stage: a state folder, a fake hub, MLflow -----------------------------------------------
class FakeHub(BaseHTTPRequestHandler):
    """The hub's token API, as the lifecycles use it: ``POST /hub/api/users/<name>/tokens`` and ``DELETE``."""

    issued = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.endswith("/tokens"):
            return self._answer(404, {"message": "not faked"})
        FakeHub.issued += 1
        self._answer(201, {"id": f"a{FakeHub.issued}", "token": f"fake-token-{FakeHub.issued}"})

    def do_DELETE(self) -> None:  # noqa: N802
        self.send_response(204)
        self.end_headers()

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Stage:
    settings: Settings
    env: dict[str, str]
    backend: LocalBackend
    apis: list[ApiProcess] = field(default_factory=list)

    def storage(self, user: str) -> OwnedStorage:
        store = OwnedStorage(f"file://{self.settings.user_storage(user)}", {}, self.backend.identity(user))
        store.ensure_root()
        return store

    @functools.cached_property
    def registry(self) -> Registry:
        """The lifecycles, for what the test reads through them (a server's address)."""
        return Registry(Platform.for_settings(self.settings, self.backend))

    def api(self, *args: str) -> ApiProcess:
        proc = ApiProcess(self, list(args))
        self.apis.append(proc)
        return proc


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    state = reachable_state(Path(tmp_path_factory.mktemp("recovery-faults")) / "state")
    port = free_port()  # the platform's public URL: MLflow answers there, at /services/mlflow
    hub = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI4LAB_", "JUPYTERHUB_", "MLFLOW_"))}
    env.update({"AI4LAB_STATE_DIR": str(state), "AI4LAB_PORT": str(port), "AI4LAB_CONFIG": str(state / "ai4lab.yaml"),
                "AI4LAB_DEPLOYMENT_IDLE_TIMEOUT": "0", "PYTHONPATH": str(ROOT),
                "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub.server_address[1]}/hub/api",
                "JUPYTERHUB_API_TOKEN": "fake-hub-token"})
    settings = Settings(state_dir=state, port=port, mlflow_backend_port=port)
    prepare_state(settings)
    db.upgrade(settings.db_url)
    mlflow_log = open(settings.logs_dir / "mlflow.log", "ab")
    mlflow = subprocess.Popen(mlflow_command(settings, "/services/mlflow"), stdout=mlflow_log,
                              stderr=subprocess.STDOUT, start_new_session=True,
                              env={**env, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    backend = LocalBackend(Accounts.from_settings(settings), CgroupLimits(settings.cgroup_parent))
    stage = Stage(settings=settings, env=env, backend=backend)
    try:
        yield stage
    finally:
        for api in stage.apis:
            api.kill()
        try:
            for dep in deps.list_deployments(settings.db_url):  # what a failed test left running
                for proc in job_processes(f"{dep.kind}-{dep.id}"):
                    proc.kill()
            CgroupLimits(settings.cgroup_parent).sweep(keep=())
        finally:
            os.killpg(mlflow.pid, signal.SIGTERM)
            try:
                mlflow.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(mlflow.pid, signal.SIGKILL)
                mlflow.wait()
            mlflow_log.close()
            hub.shutdown()


def wait_mlflow(stage: Stage, timeout: float = 90) -> None:
    url = f"{stage.settings.public_url}/services/mlflow/health"
    wait_until(lambda: _answers(url), timeout, "MLflow did not answer", every=0.3)


def _answers(url: str, verify: bool = True) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5, verify=verify)
    except httpx.TransportError:
        return None


# -- the API process ----------------------------------------------------------------------------
class ApiProcess:
    """``recovery_api.py`` as a child process: its stdout lines arrive on a queue; stdin takes commands."""

    def __init__(self, stage: Stage, args: list[str]) -> None:
        self.log = stage.settings.logs_dir / f"api-{len(stage.apis)}.log"
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.integration.recovery_api", *args], cwd=ROOT,
                                         env=stage.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = 120) -> str | None:
        """The next line starting with ``prefix``; None when the process ended first."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                return None
            if line.startswith(prefix):
                return line
        raise TimeoutError(f"no {prefix!r} from the API process within {timeout}s; its log:\n{self.tail()}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


# -- what a run left behind ---------------------------------------------------------------------
#: A downtime that lasts until something happened to the deployment (said, and checked), not a random time.
Until = tuple[str, Callable[[Deployment], bool]]


def job_processes(job: str) -> list[psutil.Process]:
    """The live processes of job ``job`` (``training-<id>``), found by the variable every job process carries."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(JOB_MARK) == job:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def job_roots(job: str) -> list[psutil.Process]:
    """The processes of ``job`` whose parent is not one of them: one per launch of the job."""
    procs = job_processes(job)
    pids = {p.pid for p in procs}
    return [p for p in procs if p.ppid() not in pids]


def current(stage: Stage, dep_id: str) -> Deployment:
    dep = deps.get(stage.settings.db_url, dep_id)
    assert dep is not None
    return dep


def wait_status(stage: Stage, dep_id: str, wanted: tuple[str, ...], timeout: float, about: str) -> Deployment:
    return wait_until(lambda: (d := current(stage, dep_id)).status in wanted and d, timeout,
                      f"{dep_id} not {'/'.join(wanted)} ({about})", every=0.2)


#: The job's processes all ended (a job that finishes while nobody watches it).
job_ended: Until = ("the job ended", lambda dep: not job_processes(f"{dep.kind}-{dep.id}"))


def group_exists(stage: Stage, job: str) -> bool:
    return stage.backend.limits.group(job).exists()


# -- one fault run ------------------------------------------------------------------------------
@dataclass
class Fault:
    """Where the API is killed and how long the platform stays down, drawn from a seed.

    ``until``: the platform stays down until that happened (said, and checked on the deployment as the
    killed API left it), instead of for a random ``downtime``. ``about`` says it all (printed, and in
    every failure).
    """

    case: str
    seed: int
    delay: float = 0.0
    downtime: float = 0.0
    until: Until | None = None

    @classmethod
    def draw(cls, case: str, test: str, span: float, until: dict[str, Until] | None = None) -> Fault:
        base = os.environ.get("AI4LAB_FAULT_SEED")
        seed = int(base) if base else random.randrange(2**32)
        rng = random.Random(seed ^ zlib.crc32(f"{test} {case}".encode()))
        delay = round(rng.uniform(0, span), 3) if case == "random" else 0.0
        fault = cls(case, seed, delay, round(rng.uniform(0, 2), 3), (until or {}).get(case))
        print(f"fault: {fault.about}")
        return fault

    @property
    def api_args(self) -> list[str]:
        return ["--no-cgroups"] if self.case == "after-launch" else []

    @property
    def about(self) -> str:
        when = "when create returned" if self.case == "early" else f"{self.delay}s after the job's launch"
        down = f"until {self.until[0]}" if self.until else f"for {self.downtime}s"
        return f"case {self.case}, AI4LAB_FAULT_SEED={self.seed}: killed {when}, down {down}"


@dataclass
class Recovered:
    """A deployment as the killed API left it, and the API that recovered it."""

    dep: Deployment
    api: ApiProcess
    fault: Fault
    t0: float
    #: Wall-clock time the second API was started at (what a server it launched writes as its start).
    restarted_at: float

    @property
    def id(self) -> str:
        return self.dep.id

    def say(self, what: str) -> None:
        print(f"{time.monotonic() - self.t0:5.1f}s {what}")


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_with_fault(stage: Stage, user: str, request: dict[str, Any], fault: Fault) -> Recovered:
    """Create ``request`` in a first API process, kill it as ``fault`` says, start a second one that recovers.

    Checks what recovery itself must have done by the time it returns: a deployment caught starting has
    none of its earlier processes left (they are ended before it starts again, recorded or not); one that
    was running with its process alive is re-attached (the same process).
    """
    t0 = time.monotonic()
    known = {d.id for d in deps.list_deployments(stage.settings.db_url, owner=user)}
    first = stage.api("--user", user, "--request", json.dumps(request), *fault.api_args,
                      *([] if fault.case == "early" else ["--die-after-launch", str(fault.delay)]))
    first.wait_for("recovered")
    if fault.case == "early":
        first.wait_for("created", timeout=180)
    else:  # it dies by itself, in create (a job) or in the start that create spawned
        assert first.wait_for("dying", timeout=180 + fault.delay) is not None, first.tail()
        first.proc.wait(timeout=30)
    first.kill()
    new = [d for d in deps.list_deployments(stage.settings.db_url, owner=user) if d.id not in known]
    assert len(new) == 1, f"{len(new)} deployments recorded ({fault.about}); API log:\n{first.tail()}"
    dep = new[0]
    job = f"{dep.kind}-{dep.id}"
    print(f"{time.monotonic() - t0:5.1f}s {dep.kind} {dep.id} was {dep.status} ({dep.status_reason!r}) "
          "when the API died")
    if fault.until:
        wait_until(lambda: fault.until[1](dep), 180, f"not {fault.until[0]} while the platform was down")
        print(f"{time.monotonic() - t0:5.1f}s {fault.until[0]}")
    else:
        time.sleep(fault.downtime)
    before = job_processes(job)
    restarted_at = time.time()
    second = stage.api(*fault.api_args)
    line = second.wait_for("recovered")
    assert line is not None, second.tail()
    print(f"{time.monotonic() - t0:5.1f}s {line}")
    if dep.status in ("queued", "starting"):
        left = [p for p in before if alive(p)]
        assert left == [], f"{fault.about}: processes of {job} launched before the restart survive recovery: {left}"
    elif dep.status == "running" and _same_process(dep.backend_state) is not None:
        assert current(stage, dep.id).backend_state.get("pid") == dep.backend_state["pid"], \
            f"{fault.about}: {job} was running, yet recovery did not re-attach its process"
    return Recovered(dep, second, fault, t0, restarted_at)


# -- servers: the Flower tool and module deployments ------------------------------------------------
def stop_and_check_nothing_left(stage: Stage, api: ApiProcess, dep_id: str, job: str, fault: Fault) -> None:
    api.send(f"stop {dep_id}")
    line = api.wait_for(f"stopped {dep_id}", timeout=60)
    assert line is not None and line.endswith("stopped"), f"{fault.about}: {line}\n{api.tail()}"
    assert job_processes(job) == [], fault.about
    assert not group_exists(stage, job), fault.about


def one_live_server(stage: Stage, dep: Deployment, job: str, fault: Fault) -> psutil.Process:
    """The deployment's one server process: the one its record names, alive; no other launch of the job."""
    proc = _same_process(dep.backend_state)
    assert proc is not None, f"{fault.about}: the recorded server process is gone: {dep.backend_state}"
    roots = job_roots(job)
    assert [p.pid for p in roots] == [proc.pid], f"{fault.about}: processes of {job}: {roots}"
    return proc


@pytest.fixture(scope="module")
def flower_user(stage: Stage) -> str:
    accounts.ensure_user(stage.settings.db_url, "fault-flower", role="intermediate")
    ensure_env(bundled_catalog_path() / "tools" / "ai4lab-flower", stage.settings.envs_dir)
    return "fault-flower"


@pytest.mark.parametrize("case", CASES)
def test_flower_server_is_reattached_or_restarted(stage: Stage, flower_user: str, case: str) -> None:
    # after an unrecorded launch, down until that server wrote its status file: the restarted one must not
    # pass for running on it
    written = ("the launched server wrote its status file",
               lambda dep: (stage.settings.deployments_root / dep.id / "status.json").is_file())
    fault = Fault.draw(case, "flower", span=5.0, until={"after-launch": written})
    rec = run_with_fault(stage, flower_user, {
        "kind": "tool", "item": "ai4lab-flower", "config": {"rounds": 2, "min_fit_clients": 2,
                                                            "min_available_clients": 2}}, fault)
    dep_id, api = rec.id, rec.api
    job = f"tool-{dep_id}"
    try:
        dep = wait_status(stage, dep_id, ("running", "failed", "stopped"), 120, fault.about)
        rec.say(f"{dep.status}")
        assert dep.status == "running", f"{fault.about}: {dep.status_reason}\nAPI log:\n{api.tail()}"
        server = one_live_server(stage, dep, job, fault)
        status = FlowerTool.status(dep)
        assert status.get("state") == "waiting for clients", status
        if server.pid != rec.dep.backend_state.get("pid"):  # started again: the status file is the new server's
            assert status["started"] >= rec.restarted_at, f"{fault.about}: running on a killed server's status file"
        address = f"https://127.0.0.1:{dep.backend_state['port']}/health"
        wait_until(lambda: _answers(address, verify=False), 60, f"the Flower server does not answer ({fault.about})")
        assert current(stage, dep_id).status == "running"
        stop_and_check_nothing_left(stage, api, dep_id, job, fault)
        rec.say("stopped, nothing left")
    finally:
        api.kill()


@pytest.fixture(scope="module")
def module_user(stage: Stage) -> str:
    accounts.ensure_user(stage.settings.db_url, "fault-module", role="intermediate")
    ensure_env(DIGITS, stage.settings.envs_dir)
    return "fault-module"


@pytest.mark.parametrize("case", CASES)
def test_module_server_is_reattached_or_restarted(stage: Stage, module_user: str, case: str) -> None:
    fault = Fault.draw(case, "module", span=5.0)
    rec = run_with_fault(stage, module_user, {"kind": "module", "item": "ai4lab-digits"}, fault)
    dep_id, api = rec.id, rec.api
    job = f"module-{dep_id}"
    try:
        dep = wait_status(stage, dep_id, ("running", "failed", "stopped"), 180, fault.about)
        rec.say(f"{dep.status}")
        assert dep.status == "running", f"{fault.about}: {dep.status_reason}\nAPI log:\n{api.tail()}"
        one_live_server(stage, dep, job, fault)
        base = stage.registry.of(dep).api_base(dep)  # type: ignore[attr-defined]
        r = httpx.get(f"{base}/v2/models/", timeout=10)
        assert r.status_code == 200 and any(m.get("id") == "ai4lab-digits" or m.get("name") == "ai4lab-digits"
                                            for m in r.json()["models"]), r.text
        stop_and_check_nothing_left(stage, api, dep_id, job, fault)
        rec.say("stopped, nothing left")
    finally:
        api.kill()


# -- trainings and batch jobs -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def digit_images(stage: Stage, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder of a few digit PNGs (class subfolders) in fault-batch's storage; its storage path."""
    accounts.ensure_user(stage.settings.db_url, "fault-batch", role="intermediate")
    env = ensure_env(DIGITS)
    folder = Path(tmp_path_factory.mktemp("digit-images"))
    subprocess.run([str(env_bin(env, "python")), "-m", "ai4lab_digits.data", str(folder), "--n", "12"],
                   check=True, capture_output=True)
    store = stage.storage("fault-batch")
    for png in folder.rglob("*.png"):
        store.write(f"images/{png.relative_to(folder)}", png.read_bytes())
    return "images"


@pytest.mark.parametrize("case", CASES)
def test_batch_outcome_is_read_back(stage: Stage, digit_images: str, case: str) -> None:
    fault = Fault.draw(case, "batch", span=3.0, until={"random": job_ended})
    output = f"results-{case}"
    rec = run_with_fault(stage, "fault-batch", {
        "kind": "batch", "item": "ai4lab-digits", "input": digit_images, "output": output}, fault)
    dep_id, api = rec.id, rec.api
    try:
        dep = wait_status(stage, dep_id, ("succeeded", "failed", "cancelled"), 120, fault.about)
        rec.say(f"{dep.status}")
        assert dep.status == "succeeded", f"{fault.about}: {dep.status_reason}\nAPI log:\n{api.tail()}"
        storage = stage.settings.user_storage("fault-batch")
        inputs = sorted(p.relative_to(storage / digit_images) for p in (storage / digit_images).rglob("*.png"))
        summary = json.loads((storage / output / "summary.json").read_text())
        assert summary["files"] == len(inputs) and summary["failed"] == 0, summary
        for rel in inputs:
            answer = json.loads((storage / output / (str(rel).replace("/", "__") + ".json")).read_text())
            assert answer["file"] == str(rel) and "label" in answer["predictions"], answer
        assert job_processes(f"batch-{dep_id}") == [], fault.about
        assert not group_exists(stage, f"batch-{dep_id}"), fault.about
    finally:
        api.kill()


@pytest.fixture(scope="module")
def digits_csv(stage: Stage, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small digits CSV in fault-train's storage (written by the module's own helper); its storage path."""
    accounts.ensure_user(stage.settings.db_url, "fault-train", role="intermediate")
    ensure_env(DIGITS, stage.settings.envs_dir, extras=("mlflow",))  # the training's (built once, cached)
    env = ensure_env(DIGITS)
    path = Path(tmp_path_factory.mktemp("digits")) / "digits.csv"
    subprocess.run([str(env_bin(env, "python")), "-m", "ai4lab_digits.data", str(path), "--n", "200"],
                   check=True, capture_output=True)
    stage.storage("fault-train").write("datasets/digits.csv", path.read_bytes())
    return "datasets/digits.csv"


@pytest.mark.parametrize("case", CASES)
def test_training_outcome_is_read_back(stage: Stage, digits_csv: str, case: str) -> None:
    """Killed before its process started: queued again and run; killed while it ran: its result read back."""
    fault = Fault.draw(case, "training", span=8.0, until={"random": job_ended})
    wait_mlflow(stage)
    rec = run_with_fault(stage, "fault-train", {
        "kind": "training", "item": "ai4lab-digits", "dataset": digits_csv, "args": {"epochs": 150}}, fault)
    dep_id, api = rec.id, rec.api
    try:
        dep = wait_status(stage, dep_id, ("succeeded", "failed", "cancelled"), 120, fault.about)
        rec.say(f"{dep.status}")
        log = (stage.settings.logs_dir / "deployments" / f"{dep_id}.log").read_text(errors="replace")
        assert dep.status == "succeeded", f"{fault.about}: {dep.status_reason}\nAPI log:\n{api.tail()}"
        model = Path(dep.endpoints["model_path"])
        assert model.is_file() and model.parent.name == dep_id, dep.endpoints
        assert (model.parent / "metrics.json").is_file()
        assert dep.endpoints.get("mlflow_run_id"), dep.endpoints
        assert "training done" in log, log[-2000:]
        assert job_processes(f"training-{dep_id}") == [], fault.about
        assert not group_exists(stage, f"training-{dep_id}"), fault.about
    finally:
        api.kill()
