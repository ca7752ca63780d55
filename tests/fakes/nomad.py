"""A fake Nomad HTTP API that checks what it is sent against the Nomad spec, and
simulates the job -> evaluation -> allocation lifecycle.

Every request must be a method and path of the vendored spec
(``../shared/specs/nomad-openapi-v1.yaml``; plus ``/v1/client/fs/logs`` and
``/v1/event/stream``, which that Nomad 1.1 spec lacks), request bodies are
validated against the spec's schemas made strict (``nomad_spec``; 400 with the
errors otherwise), and so is every JSON answer, so the fake cannot drift from
the real API. ``X-Nomad-Token`` is checked when a token is set.

Lifecycle, as a Nomad client would drive it, advanced by a background "client"
thread every ``step`` seconds:

- register: an evaluation; placement on the first ready node whose datacenter,
  node pool, constraints (``=``, ``!=``, ``regexp`` on ``${node.datacenter}``,
  ``${node.pool}``, ``${meta.*}``) and free GPUs of the asked model fit. None
  fits: the evaluation carries ``FailedTGAllocs`` (an ``AllocationMetric`` with
  ``ConstraintFiltered`` / ``DimensionExhausted``) and a ``BlockedEval``, as
  Nomad's scheduler does; blocked jobs are placed when capacity frees up.
- an allocation moves pending (``Received``, ``Task Setup``) -> ``Driver``
  ("Downloading image") -> running (``Started``) with task events.
- ``driver="sim"``: tests end tasks with ``finish`` / ``fail``;
  ``driver="exec"``: the main task's command really runs as a local process
  (like Nomad's raw_exec driver: no container, no port mapping, so
  ``NOMAD_PORT_<label>`` is the host port); its exit ends the allocation.
- ``lose_node``: the node goes down, its allocations are ``lost``, and are
  rescheduled elsewhere when a node fits (else the evaluation is blocked).

Blocking queries: ``GET /v1/job/{id}/allocations`` and ``/v1/allocation/{id}``
honour ``index`` (query parameter, as Nomad reads it; the 1.1 spec declares it as
a header, which is also accepted) and ``wait``, and answer ``X-Nomad-Index``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tests.fakes import nomad_spec

LIVE = ("pending", "running")
NO_DEVICES = "devices: no devices match request"


@dataclass
class FakeNode:
    name: str
    datacenter: str = "dc1"
    pool: str = "default"
    cpu_mhz: int = 16000
    cores: int = 8
    memory_mb: int = 32768
    disk_mb: int = 100000
    gpus: dict[str, int] = field(default_factory=dict)  # model -> count
    meta: dict[str, str] = field(default_factory=dict)
    address: str = "10.0.0.1"
    status: str = "ready"
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def device_ids(self, model: str) -> list[str]:
        return [f"GPU-{self.name}-{list(self.gpus).index(model)}-{i}" for i in range(self.gpus.get(model, 0))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _now_ns() -> int:
    return time.time_ns()


def _event(etype: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"Type": etype, "Time": _now_ns(), "DisplayMessage": message, "Message": message, **extra}


def _parse_wait(text: str | None) -> float:
    if not text:
        return 300.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    if not m:
        return 300.0
    value = float(m.group(1))
    return min(600.0, value / 1000 if m.group(2) == "ms" else value * 60 if m.group(2) == "m" else value)


class FakeNomad:
    """State of the fake cluster, its client thread, and the FastAPI app serving it."""

    def __init__(
        self,
        nodes: list[FakeNode] | None = None,
        token: str | None = None,
        *,
        driver: str = "sim",
        step: float = 0.05,
        exec_env: dict[str, str] | None = None,
        exec_if: Any = None,
    ) -> None:
        """``exec_if(job) -> bool`` picks the jobs the exec driver runs (default: all); the others are simulated."""
        if driver not in ("sim", "exec"):
            raise ValueError("driver is 'sim' or 'exec'")
        self.exec_if = exec_if or (lambda job: True)
        self.nodes = nodes if nodes is not None else [FakeNode("node1")]
        self.token = token
        self.driver = driver
        self.step = step
        self.exec_env = exec_env or {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.allocs: dict[str, dict[str, Any]] = {}
        self.evals: dict[str, dict[str, Any]] = {}
        self.logs: dict[tuple[str, str, str], str] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # alloc id -> main task process (exec driver)
        self.workdir = Path(tempfile.mkdtemp(prefix="fake-nomad-"))
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, query)
        self.index = 10
        self.lock = threading.RLock()
        self.app = self._make_app()
        self._stop = threading.Event()
        self._client = threading.Thread(target=self._client_loop, name="fake-nomad-client", daemon=True)

    # -- test hooks -----------------------------------------------------
    def alloc_of(self, job_id: str) -> dict[str, Any]:
        allocs = [a for a in self.allocs.values() if a["JobID"] == job_id]
        if not allocs:
            raise KeyError(f"no allocation for job {job_id}")
        return max(allocs, key=lambda a: a["CreateIndex"])

    def wait_for(self, predicate: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return
            time.sleep(0.01)
        raise TimeoutError("fake Nomad: condition not reached")

    def wait_running(self, job_id: str, timeout: float = 10) -> dict[str, Any]:
        self.wait_for(lambda: any(a["JobID"] == job_id and a["ClientStatus"] == "running" for a in self.allocs.values()), timeout)
        return self.alloc_of(job_id)

    def finish(self, job_id: str, exit_code: int = 0) -> None:
        """The main task exits: complete (0) or failed (non-zero)."""
        with self.lock:
            a = self.alloc_of(job_id)
            self._start(a)
            self._terminate(a, exit_code)

    def fail(self, job_id: str, message: str) -> None:
        """The main task fails before running (e.g. image pull error)."""
        with self.lock:
            a = self.alloc_of(job_id)
            ts = a["TaskStates"]["main"]
            ts.update(State="dead", Failed=True)
            ts["Events"].append(_event("Driver Failure", message, DriverError=message, FailsTask=True))
            a["ClientStatus"] = "failed"
            self._touch(a)

    def lose_node(self, node_name: str) -> None:
        """The node stops heartbeating: its live allocations are lost and rescheduled where possible."""
        with self.lock:
            node = next(n for n in self.nodes if n.name == node_name)
            node.status = "down"
            lost = [a for a in self.allocs.values() if a["NodeID"] == node.id and a["ClientStatus"] in LIVE]
            for a in lost:
                self._kill_process(a["ID"])
                a["ClientStatus"] = "lost"
                a["DesiredStatus"] = "stop"
                a["ClientDescription"] = f"alloc is lost since its node {node.name} is down"
                self._touch(a)
            for a in lost:
                job = self.jobs.get((a["Namespace"], a["JobID"]))
                if job is not None and not job["Stop"]:
                    self._evaluate(job, "node-update", previous=a["ID"])

    def set_logs(self, job_id: str, stdout: str, stderr: str = "", task: str = "main") -> None:
        a = self.alloc_of(job_id)
        self.logs[(a["ID"], task, "stdout")] = stdout
        self.logs[(a["ID"], task, "stderr")] = stderr

    def evaluations_of(self, job_id: str) -> list[dict[str, Any]]:
        return sorted((e for e in self.evals.values() if e["JobID"] == job_id), key=lambda e: e["CreateIndex"])

    # -- model ----------------------------------------------------------
    def _next(self) -> int:
        self.index += 1
        return self.index

    def _touch(self, a: dict[str, Any]) -> None:
        a["ModifyIndex"] = a["AllocModifyIndex"] = self._next()
        a["ModifyTime"] = _now_ns()

    def _node_used(self, node: FakeNode) -> dict[str, Any]:
        used: dict[str, Any] = {"cpu": 0, "mem": 0, "gpus": set()}
        for a in self.allocs.values():
            if a["NodeID"] != node.id or a["ClientStatus"] not in LIVE:
                continue
            for t in a["AllocatedResources"]["Tasks"].values():
                used["cpu"] += t["Cpu"]["CpuShares"]
                used["mem"] += t["Memory"]["MemoryMB"]
                for d in t.get("Devices", []):
                    used["gpus"].update(d["DeviceIDs"])
        return used

    @staticmethod
    def _attr(node: FakeNode, target: str) -> str | None:
        if target == "${node.datacenter}":
            return node.datacenter
        if target == "${node.pool}":
            return node.pool
        m = re.fullmatch(r"\$\{meta\.(.+)\}", target)
        if m:
            return node.meta.get(m.group(1))
        return None

    @classmethod
    def _holds(cls, node: FakeNode, c: dict[str, str]) -> bool:
        value = cls._attr(node, c["LTarget"])
        op, want = c.get("Operand", "="), c.get("RTarget", "")
        if value is None:
            return op == "!="
        if op in ("=", "==", "is"):
            return value == want
        if op in ("!=", "not"):
            return value != want
        if op == "regexp":
            return re.search(want, value) is not None
        raise NotImplementedError(f"fake Nomad: operand {op!r}")

    @staticmethod
    def _fits_model(model: str, device: dict[str, Any]) -> bool:
        return all(c["LTarget"] != "${device.model}" or model == c["RTarget"] for c in device.get("Constraints", []))

    def _place(self, job: dict[str, Any]) -> tuple[FakeNode | None, dict[str, Any]]:
        """A node for the job's group, or None and the ``AllocationMetric`` saying why."""
        group = job["TaskGroups"][0]
        devices = [d for t in group["Tasks"] for d in t.get("Resources", {}).get("Devices", [])]
        metric: dict[str, Any] = {"NodesEvaluated": 0, "NodesFiltered": 0, "NodesExhausted": 0,
                                  "NodesAvailable": {}, "ConstraintFiltered": {}, "DimensionExhausted": {}}
        for node in self.nodes:
            if "*" not in job.get("Datacenters", ["*"]) and node.datacenter not in job["Datacenters"]:
                continue
            pool = job.get("NodePool", "default")
            if pool != "all" and node.pool != pool:
                continue
            if node.status != "ready":
                continue
            metric["NodesAvailable"][node.datacenter] = metric["NodesAvailable"].get(node.datacenter, 0) + 1
            metric["NodesEvaluated"] += 1
            failed = [c for c in job.get("Constraints", []) if not self._holds(node, c)]
            if failed:
                c = failed[0]
                key = f"{c['LTarget']} {c['Operand']} {c['RTarget']}"
                metric["ConstraintFiltered"][key] = metric["ConstraintFiltered"].get(key, 0) + 1
                metric["NodesFiltered"] += 1
                continue
            used = self._node_used(node)
            exhausted = None
            for d in devices:
                free = [i for m in node.gpus if self._fits_model(m, d) for i in node.device_ids(m) if i not in used["gpus"]]
                if len(free) < d["Count"]:
                    exhausted = NO_DEVICES
            mem = sum(t.get("Resources", {}).get("MemoryMB", 300) for t in group["Tasks"])
            if exhausted is None and used["mem"] + mem > node.memory_mb:
                exhausted = "memory"
            if exhausted:
                metric["NodesExhausted"] += 1
                metric["DimensionExhausted"][exhausted] = metric["DimensionExhausted"].get(exhausted, 0) + 1
                continue
            return node, metric
        return None, metric

    def _allocate(self, job: dict[str, Any], node: FakeNode, previous: str | None) -> dict[str, Any]:
        group = job["TaskGroups"][0]
        used = self._node_used(node)
        tasks_res: dict[str, Any] = {}
        for t in group["Tasks"]:
            r = t.get("Resources", {})
            cpu = r.get("CPU") or (r.get("Cores", 0) * (node.cpu_mhz // node.cores)) or 100
            res: dict[str, Any] = {"Cpu": {"CpuShares": cpu}, "Memory": {"MemoryMB": r.get("MemoryMB", 300)}}
            devs = []
            for d in r.get("Devices", []):
                for model in node.gpus:
                    if self._fits_model(model, d):
                        free = [i for i in node.device_ids(model) if i not in used["gpus"]][: d["Count"]]
                        used["gpus"].update(free)
                        devs.append({"Vendor": "nvidia", "Type": "gpu", "Name": model, "DeviceIDs": free})
                        break
            if devs:
                res["Devices"] = devs
            tasks_res[t["Name"]] = res
        ports = []
        for net in group.get("Networks", []):
            for p in net.get("DynamicPorts", []):
                ports.append({"Label": p["Label"], "Value": free_port(), "To": p.get("To", 0), "HostIP": node.address})
        idx = self._next()
        alloc: dict[str, Any] = {
            "ID": str(uuid.uuid4()),
            "EvalID": str(uuid.uuid4()),
            "Name": f"{job['ID']}.{group['Name']}[0]",
            "Namespace": job.get("Namespace", "default"),
            "NodeID": node.id,
            "NodeName": node.name,
            "JobID": job["ID"],
            "TaskGroup": group["Name"],
            "DesiredStatus": "run",
            "ClientStatus": "pending",
            "ClientDescription": "No tasks have started",
            "TaskStates": {
                t["Name"]: {"State": "pending", "Failed": False, "Restarts": 0,
                            "Events": [_event("Received", "Task received by client")]}
                for t in group["Tasks"]
            },
            "AllocatedResources": {
                "Tasks": tasks_res,
                "Shared": {
                    "DiskMB": group.get("EphemeralDisk", {}).get("SizeMB", 300),
                    "Ports": ports,
                    "Networks": [{"IP": node.address, "Mode": "host", "DynamicPorts": [
                        {"Label": p["Label"], "Value": p["Value"], "To": p["To"]} for p in ports]}] if ports else [],
                },
            },
            "CreateIndex": idx,
            "ModifyIndex": idx,
            "AllocModifyIndex": idx,
            "CreateTime": _now_ns(),
            "ModifyTime": _now_ns(),
            "_stage": 0,
        }
        if previous:
            alloc["PreviousAllocation"] = previous
        return alloc

    def _evaluate(self, job: dict[str, Any], trigger: str, previous: str | None = None) -> dict[str, Any]:
        """One scheduler pass for ``job``: an allocation, or a blocked evaluation saying why not."""
        idx = self._next()
        ev: dict[str, Any] = {
            "ID": str(uuid.uuid4()), "JobID": job["ID"], "Namespace": job["Namespace"], "Type": job["Type"],
            "Priority": job.get("Priority", 50), "TriggeredBy": trigger, "Status": "complete",
            "JobModifyIndex": job["JobModifyIndex"], "CreateIndex": idx, "ModifyIndex": idx,
            "CreateTime": _now_ns(), "ModifyTime": _now_ns(),
        }
        if previous:
            ev["PreviousEval"] = next((a["EvalID"] for a in self.allocs.values() if a["ID"] == previous), "")
        node, metric = self._place(job)
        if node is not None:
            alloc = self._allocate(job, node, previous)
            alloc["EvalID"] = ev["ID"]
            self.allocs[alloc["ID"]] = alloc
            job["Status"] = "running"
        else:
            blocked = {**ev, "ID": str(uuid.uuid4()), "Status": "blocked", "TriggeredBy": "queued-allocs",
                       "PreviousEval": ev["ID"], "StatusDescription": "created to place remaining allocations",
                       "CreateIndex": self._next(), "ModifyIndex": self.index}
            ev["FailedTGAllocs"] = {job["TaskGroups"][0]["Name"]: metric}
            ev["BlockedEval"] = blocked["ID"]
            ev["QueuedAllocations"] = {job["TaskGroups"][0]["Name"]: 1}
            self.evals[blocked["ID"]] = blocked
            job["Status"] = "pending"
        self.evals[ev["ID"]] = ev
        job["ModifyIndex"] = self._next()
        return ev

    def _unblock(self) -> None:
        """Capacity changed: blocked evaluations get another scheduler pass (as Nomad's blocked-evals tracker)."""
        for ev in [e for e in self.evals.values() if e["Status"] == "blocked"]:
            job = self.jobs.get((ev["Namespace"], ev["JobID"]))
            ev["Status"] = "complete"
            ev["ModifyIndex"] = self._next()
            if job is not None and not job["Stop"]:
                self._evaluate(job, "queued-allocs")

    # -- the client: moves allocations along, runs the exec driver --------
    def _client_loop(self) -> None:
        while not self._stop.wait(self.step):
            with self.lock:
                for a in list(self.allocs.values()):
                    if a["ClientStatus"] == "pending":
                        self._advance(a)
                    elif a["ClientStatus"] == "running" and a["ID"] in self.procs:
                        code = self.procs[a["ID"]].poll()
                        if code is not None:
                            del self.procs[a["ID"]]
                            self._terminate(a, code)

    def _advance(self, a: dict[str, Any]) -> None:
        a["_stage"] += 1
        job = self.jobs.get((a["Namespace"], a["JobID"]))
        if job is None:
            return
        if a["_stage"] == 1:
            for ts in a["TaskStates"].values():
                ts["Events"].append(_event("Task Setup", "Building Task Directory"))
        elif a["_stage"] == 2:
            for t in job["TaskGroups"][0]["Tasks"]:
                image = t.get("Config", {}).get("image")
                if image:
                    msg = f"Downloading image {image}"
                    a["TaskStates"][t["Name"]]["Events"].append(_event("Driver", msg, DriverMessage=msg))
        else:
            self._start(a)
            return
        self._touch(a)

    def _start(self, a: dict[str, Any]) -> None:
        if a["ClientStatus"] != "pending":
            return
        if self.driver == "exec" and not self._exec(a):
            a["ClientStatus"] = "failed"
            a["TaskStates"]["main"].update(State="dead", Failed=True)
            self._touch(a)
            return
        a["ClientStatus"] = "running"
        a["ClientDescription"] = "Tasks are running"
        for ts in a["TaskStates"].values():
            ts["State"] = "running"
            ts["StartedAt"] = "2026-01-01T00:00:00Z"
            ts["Events"].append(_event("Started", "Task started by client"))
        self._touch(a)

    def _terminate(self, a: dict[str, Any], exit_code: int) -> None:
        failed = exit_code != 0
        for name, ts in a["TaskStates"].items():
            ts["State"] = "dead"
            ts["FinishedAt"] = "2026-01-01T00:00:01Z"
            if name == "main":
                ts["Failed"] = failed
                ts["Events"].append(_event("Terminated", f"Exit Code: {exit_code}", ExitCode=exit_code))
                if failed:
                    ts["Events"].append(_event("Not Restarting", "Policy allows no restarts", FailsTask=True))
        a["ClientStatus"] = "failed" if failed else "complete"
        a["ClientDescription"] = "Failed tasks" if failed else "All tasks have completed"
        self._touch(a)
        self._unblock()

    def _interpolate(self, text: str, env: dict[str, str]) -> str:
        return re.sub(r"\$\{(NOMAD_[A-Z0-9_a-z]+)\}", lambda m: env.get(m.group(1), m.group(0)), text)

    def _exec(self, a: dict[str, Any]) -> bool:
        """raw_exec-like: run the main task's command on this machine with the job's Env; False if it cannot start."""
        job = self.jobs[(a["Namespace"], a["JobID"])]
        task = next(t for t in job["TaskGroups"][0]["Tasks"] if t["Name"] == "main")
        config = task.get("Config", {})
        if not config.get("command") or not self.exec_if(job):
            return True
        env = {"NOMAD_ALLOC_ID": a["ID"], "NOMAD_JOB_ID": job["ID"], "NOMAD_TASK_NAME": "main",
               "NOMAD_DC": next(n.datacenter for n in self.nodes if n.id == a["NodeID"])}
        for p in a["AllocatedResources"]["Shared"]["Ports"]:
            env[f"NOMAD_PORT_{p['Label']}"] = env[f"NOMAD_HOST_PORT_{p['Label']}"] = str(p["Value"])
            env[f"NOMAD_IP_{p['Label']}"] = p["HostIP"]
        env |= {k: self._interpolate(v, env) for k, v in (task.get("Env") or {}).items()}
        argv = [config["command"], *config.get("args", [])]
        argv = [self._interpolate(x, env) for x in argv]
        folder = self.workdir / a["ID"]
        folder.mkdir(parents=True)
        out, err = open(folder / "stdout", "wb"), open(folder / "stderr", "wb")
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        try:
            proc = subprocess.Popen(argv, env={**base, "HOME": str(folder), **self.exec_env, **env}, cwd=folder,
                                    stdout=out, stderr=err, start_new_session=True)
        except OSError as e:
            msg = f"failed to launch command with args {argv}: {e}"
            ts = a["TaskStates"]["main"]
            ts["Events"].append(_event("Driver Failure", msg, DriverError=msg, FailsTask=True))
            return False
        finally:
            out.close()
            err.close()
        self.procs[a["ID"]] = proc
        return True

    def _kill_process(self, alloc_id: str) -> None:
        proc = self.procs.pop(alloc_id, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def _log_text(self, alloc_id: str, task: str, stream: str) -> str:
        path = self.workdir / alloc_id / stream
        if task == "main" and path.is_file():
            return path.read_text(errors="replace")
        return self.logs.get((alloc_id, task, stream), "")

    @staticmethod
    def _public(a: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in a.items() if not k.startswith("_")}

    def _stub(self, a: dict[str, Any], job_type: str) -> dict[str, Any]:
        keys = ["ID", "EvalID", "Name", "Namespace", "NodeID", "NodeName", "JobID", "TaskGroup", "DesiredStatus",
                "ClientStatus", "ClientDescription", "TaskStates", "AllocatedResources", "CreateIndex",
                "ModifyIndex", "CreateTime", "ModifyTime"]
        return {**{k: a[k] for k in keys}, "JobType": job_type}

    def _node_stub(self, node: FakeNode, resources: bool) -> dict[str, Any]:
        stub: dict[str, Any] = {
            "ID": node.id, "Name": node.name, "Datacenter": node.datacenter, "NodePool": node.pool,
            "Address": node.address, "Status": node.status, "SchedulingEligibility": "eligible",
            "Drain": False, "NodeClass": "", "Version": "1.9.3", "CreateIndex": 1, "ModifyIndex": 1,
        }
        if resources:
            stub["NodeResources"] = {
                "Cpu": {"CpuShares": node.cpu_mhz, "TotalCpuCores": node.cores},
                "Memory": {"MemoryMB": node.memory_mb},
                "Disk": {"DiskMB": node.disk_mb},
                "Devices": [
                    {"Vendor": "nvidia", "Type": "gpu", "Name": model,
                     "Instances": [{"ID": i, "Healthy": True} for i in node.device_ids(model)]}
                    for model in node.gpus
                ],
            }
            stub["ReservedResources"] = {"Cpu": {"CpuShares": 0}, "Memory": {"MemoryMB": 0}, "Disk": {"DiskMB": 0}}
        return stub

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            for alloc_id in list(self.procs):
                self._kill_process(alloc_id)

    # -- HTTP -----------------------------------------------------------
    def _make_app(self) -> FastAPI:
        app = FastAPI()
        fake = self

        def reply(schema: str, body: Any, status: int = 200, index: int | None = None) -> JSONResponse:
            nomad_spec.validate(schema, body)  # the fake must answer what the spec says
            return JSONResponse(body, status_code=status, headers={"X-Nomad-Index": str(index or fake.index)})

        @app.middleware("http")
        async def _check(request: Request, call_next: Any) -> Response:
            fake.requests.append((request.method, request.url.path, dict(request.query_params)))
            why = nomad_spec.route_error(request.method, request.url.path)
            if why:
                return PlainTextResponse(why, status_code=404)
            if fake.token is not None and request.headers.get("X-Nomad-Token") != fake.token:
                return PlainTextResponse("Permission denied", status_code=403)
            return await call_next(request)

        def ns(request: Request) -> str:
            return request.query_params.get("namespace", "default")

        def find_job(request: Request, job_id: str) -> dict[str, Any] | None:
            return fake.jobs.get((ns(request), job_id))

        async def block(request: Request, current: Any) -> int:
            """A blocking query: wait until ``current()`` (an index) passes ``index``, or ``wait`` runs out."""
            raw = request.query_params.get("index") or request.headers.get("index")
            if not raw:
                with fake.lock:
                    return current()
            since = int(raw)
            deadline = time.monotonic() + _parse_wait(request.query_params.get("wait"))
            while True:
                with fake.lock:
                    idx = current()
                if idx > since or time.monotonic() >= deadline:
                    return idx
                await asyncio.sleep(0.01)

        @app.api_route("/v1/jobs", methods=["PUT", "POST"])
        async def register(request: Request) -> Response:
            try:
                body = await request.json()
            except ValueError:
                return PlainTextResponse("Request body is not JSON", status_code=400)
            errs = nomad_spec.errors("JobRegisterRequest", body)
            if errs:
                return PlainTextResponse("JobRegisterRequest does not match the spec:\n" + "\n".join(errs), status_code=400)
            job = body.get("Job")
            if not job or not job.get("ID") or not job.get("TaskGroups"):
                return PlainTextResponse("1 error occurred:\n\t* Missing job ID or task groups", status_code=400)
            with fake.lock:
                namespace = job.get("Namespace") or body.get("Namespace") or "default"
                old = fake.jobs.get((namespace, job["ID"]))
                if old is not None and not old["Stop"]:
                    return PlainTextResponse(f"fake Nomad: job {job['ID']} is already running; updates are not simulated",
                                             status_code=400)
                job = {**job, "Namespace": namespace, "Status": "pending", "Stop": False}
                job["CreateIndex"] = job["ModifyIndex"] = job["JobModifyIndex"] = fake._next()
                fake.jobs[(namespace, job["ID"])] = job
                ev = fake._evaluate(job, "job-register")
            return reply("JobRegisterResponse", {"EvalID": ev["ID"], "EvalCreateIndex": ev["CreateIndex"],
                                                 "JobModifyIndex": job["JobModifyIndex"], "Warnings": "",
                                                 "KnownLeader": True, "LastIndex": fake.index})

        @app.get("/v1/job/{job_id}")
        async def get_job(request: Request, job_id: str) -> Response:
            job = find_job(request, job_id)
            if job is None:
                return PlainTextResponse("job not found", status_code=404)
            return reply("Job", job, index=job["ModifyIndex"])

        @app.get("/v1/job/{job_id}/allocations")
        async def job_allocs(request: Request, job_id: str) -> Response:
            key = (ns(request), job_id)

            def current() -> int:
                mine = [a["ModifyIndex"] for a in fake.allocs.values() if (a["Namespace"], a["JobID"]) == key]
                job = fake.jobs.get(key)
                return max([*mine, job["ModifyIndex"] if job else 1])

            idx = await block(request, current)
            with fake.lock:
                job = fake.jobs.get(key)
                jtype = job["Type"] if job else "service"
                allocs = [fake._stub(a, jtype) for a in fake.allocs.values() if (a["Namespace"], a["JobID"]) == key]
            return reply("[AllocationListStub]", allocs, index=idx)

        @app.get("/v1/job/{job_id}/evaluations")
        async def job_evals(request: Request, job_id: str) -> Response:
            with fake.lock:
                evals = [e for e in fake.evaluations_of(job_id) if e["Namespace"] == ns(request)]
            return reply("[Evaluation]", evals)

        @app.get("/v1/evaluation/{eval_id}")
        async def get_eval(eval_id: str) -> Response:
            ev = fake.evals.get(eval_id)
            if ev is None:
                return PlainTextResponse("eval not found", status_code=404)
            return reply("Evaluation", ev, index=ev["ModifyIndex"])

        @app.get("/v1/job/{job_id}/summary")
        async def job_summary(request: Request, job_id: str) -> Response:
            job = find_job(request, job_id)
            if job is None:
                return PlainTextResponse("job not found", status_code=404)
            counts = {"Queued": 0, "Starting": 0, "Running": 0, "Complete": 0, "Failed": 0, "Lost": 0, "Unknown": 0}
            allocs = [a for a in fake.allocs.values() if a["JobID"] == job_id]
            if not any(a["ClientStatus"] in LIVE for a in allocs) and any(
                    e["Status"] == "blocked" for e in fake.evaluations_of(job_id)):
                counts["Queued"] = 1
            for a in allocs:
                key = {"pending": "Starting", "running": "Running", "complete": "Complete", "failed": "Failed",
                       "lost": "Lost"}.get(a["ClientStatus"], "Unknown")
                counts[key] += 1
            return reply("JobSummary", {"JobID": job_id, "Namespace": job["Namespace"],
                                        "Summary": {job["TaskGroups"][0]["Name"]: counts}})

        @app.delete("/v1/job/{job_id}")
        async def deregister(request: Request, job_id: str) -> Response:
            key = (ns(request), job_id)
            with fake.lock:
                job = fake.jobs.get(key)
                if job is None:
                    return PlainTextResponse("job not found", status_code=404)
                for a in fake.allocs.values():
                    if a["JobID"] == job_id and a["Namespace"] == key[0] and a["ClientStatus"] in LIVE:
                        fake._kill_process(a["ID"])
                        a["DesiredStatus"] = "stop"
                        a["ClientStatus"] = "complete"
                        a["ClientDescription"] = "All tasks have completed"
                        for ts in a["TaskStates"].values():
                            ts["State"] = "dead"
                            ts["Events"] += [_event("Killing", "Sent interrupt. Waiting 5s before force killing"),
                                             _event("Killed", "Task successfully killed")]
                        fake._touch(a)
                for e in fake.evals.values():
                    if e["JobID"] == job_id and e["Status"] == "blocked":
                        e["Status"] = "canceled"
                        e["ModifyIndex"] = fake._next()
                if request.query_params.get("purge") == "true":
                    del fake.jobs[key]
                    for aid in [aid for aid, a in fake.allocs.items() if (a["Namespace"], a["JobID"]) == key]:
                        del fake.allocs[aid]
                else:
                    job.update(Stop=True, Status="dead")
                    job["ModifyIndex"] = job["JobModifyIndex"] = fake._next()
                fake._unblock()
            return reply("JobDeregisterResponse", {"EvalID": str(uuid.uuid4()), "EvalCreateIndex": fake.index,
                                                   "JobModifyIndex": fake.index})

        @app.get("/v1/allocation/{alloc_id}")
        async def get_alloc(request: Request, alloc_id: str) -> Response:
            if alloc_id not in fake.allocs:
                return PlainTextResponse("alloc not found", status_code=404)
            idx = await block(request, lambda: fake.allocs[alloc_id]["ModifyIndex"] if alloc_id in fake.allocs else fake.index)
            with fake.lock:
                a = fake.allocs.get(alloc_id)
                if a is None:
                    return PlainTextResponse("alloc not found", status_code=404)
                job = fake.jobs.get((a["Namespace"], a["JobID"]))
                body = fake._public(a) | ({"Job": job} if job else {})
            return reply("Allocation", body, index=idx)

        @app.get("/v1/client/fs/logs/{alloc_id}")
        async def logs(request: Request, alloc_id: str) -> Response:
            q = request.query_params
            if alloc_id not in fake.allocs:
                return PlainTextResponse("Unknown allocation", status_code=404)
            if not q.get("task") or q.get("type") not in ("stdout", "stderr"):
                return PlainTextResponse("must include task and type (stdout|stderr)", status_code=400)
            if q.get("plain") != "true":
                return PlainTextResponse("fake Nomad serves plain=true logs only", status_code=400)
            data = fake._log_text(alloc_id, q["task"], q["type"]).encode()
            offset = int(q.get("offset", "0"))
            if q.get("origin", "start") == "end":
                data = data[max(0, len(data) - offset):] if offset else b""
            else:
                data = data[offset:]
            return Response(data, media_type="text/plain")

        @app.get("/v1/nodes")
        async def nodes(request: Request) -> Response:
            resources = request.query_params.get("resources") == "true"
            return reply("[NodeListStub]", [fake._node_stub(n, resources) for n in fake.nodes])

        @app.get("/v1/node/{node_id}/allocations")
        async def node_allocs(node_id: str) -> Response:
            out = []
            with fake.lock:
                for a in fake.allocs.values():
                    if a["NodeID"] == node_id:
                        job = fake.jobs.get((a["Namespace"], a["JobID"]))
                        out.append(fake._stub(a, job["Type"] if job else "service"))
            return reply("[AllocationListStub]", out)

        return app


class ThreadedServer:
    """Runs an ASGI app with uvicorn in a thread on a free local port (the fakes' servers)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


class FakeNomadServer(ThreadedServer):
    """Runs a ``FakeNomad``: its HTTP API and its client thread."""

    def __init__(self, fake: FakeNomad) -> None:
        super().__init__(fake.app)
        self.fake = fake

    def __enter__(self) -> FakeNomadServer:
        self.fake._client.start()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        self.fake.close()
        super().__exit__(*exc)
