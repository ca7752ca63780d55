"""A small fake Nomad HTTP API that checks what it is sent against the Nomad spec.

Implements what ``NomadBackend`` uses: register (``PUT``/``POST /v1/jobs``),
read (``GET /v1/job/{id}``, ``/allocations``, ``/summary``), deregister
(``DELETE /v1/job/{id}?purge=``), ``GET /v1/allocation/{id}``,
``GET /v1/client/fs/logs/{alloc}``, ``GET /v1/nodes``,
``GET /v1/node/{id}/allocations``. Request bodies are validated against the
spec's (strict, see ``nomad_spec``) schemas, 400 with the errors otherwise, and
so is every JSON response, so that the fake cannot drift from the real API.
``/v1/client/fs/logs`` is not in the vendored spec; it follows Nomad's docs.

Placement is simulated: an allocation goes to the first ready node whose
datacenter, node pool, constraints (``=``, ``!=``, ``regexp`` on
``${node.datacenter}``, ``${node.pool}``, ``${meta.*}``) and free GPUs of the
asked model fit; none fits -> no allocation and the job stays ``pending``
(Nomad's blocked evaluation). Allocations move pending -> running on the next
read; tests drive the rest with ``finish`` / ``fail`` / ``lose_node`` and set
logs with ``set_logs``.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tests.nomad import nomad_spec


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
        return [f"GPU-{self.name}-{dict_index(self.gpus, model)}-{i}" for i in range(self.gpus.get(model, 0))]


def dict_index(d: dict[str, Any], key: str) -> int:
    return list(d).index(key)


def _now_ns() -> int:
    return time.time_ns()


class FakeNomad:
    """State of the fake cluster plus the FastAPI app serving it."""

    def __init__(self, nodes: list[FakeNode] | None = None, token: str | None = None) -> None:
        self.nodes = nodes if nodes is not None else [FakeNode("node1")]
        self.token = token
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.allocs: dict[str, dict[str, Any]] = {}
        self.logs: dict[tuple[str, str, str], str] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, query)
        self.index = 10
        self.lock = threading.Lock()
        self.app = self._make_app()

    # -- test hooks -----------------------------------------------------
    def alloc_of(self, job_id: str) -> dict[str, Any]:
        allocs = [a for a in self.allocs.values() if a["JobID"] == job_id]
        if not allocs:
            raise KeyError(f"no allocation for job {job_id}")
        return max(allocs, key=lambda a: a["CreateIndex"])

    def finish(self, job_id: str, exit_code: int = 0) -> None:
        """The main task exits: complete (0) or failed (non-zero)."""
        with self.lock:
            a = self.alloc_of(job_id)
            self._start(a)
            failed = exit_code != 0
            for name, ts in a["TaskStates"].items():
                ts["State"] = "dead"
                ts["FinishedAt"] = "2026-01-01T00:00:00Z"
                if name == "main":
                    ts["Failed"] = failed
                    ts["Events"].append(self._event("Terminated", f"Exit Code: {exit_code}", ExitCode=exit_code))
                    if failed:
                        ts["Events"].append(self._event("Not Restarting", "Policy allows no restarts", FailsTask=True))
            a["ClientStatus"] = "failed" if failed else "complete"
            self._touch(a)

    def fail(self, job_id: str, message: str) -> None:
        """The main task fails before running (e.g. image pull error)."""
        with self.lock:
            a = self.alloc_of(job_id)
            ts = a["TaskStates"]["main"]
            ts.update(State="dead", Failed=True)
            ts["Events"].append(self._event("Driver Failure", message, DriverError=message, FailsTask=True))
            a["ClientStatus"] = "failed"
            self._touch(a)

    def lose_node(self, job_id: str) -> None:
        with self.lock:
            a = self.alloc_of(job_id)
            a["ClientStatus"] = "lost"
            a["DesiredStatus"] = "stop"
            a["ClientDescription"] = "alloc is lost since its node is down"
            self._touch(a)

    def set_logs(self, job_id: str, stdout: str, stderr: str = "", task: str = "main") -> None:
        a = self.alloc_of(job_id)
        self.logs[(a["ID"], task, "stdout")] = stdout
        self.logs[(a["ID"], task, "stderr")] = stderr

    # -- model ----------------------------------------------------------
    def _next(self) -> int:
        self.index += 1
        return self.index

    def _touch(self, a: dict[str, Any]) -> None:
        a["ModifyIndex"] = self._next()
        a["ModifyTime"] = _now_ns()

    @staticmethod
    def _event(etype: str, message: str, **extra: Any) -> dict[str, Any]:
        return {"Type": etype, "Time": _now_ns(), "DisplayMessage": message, "Message": message, **extra}

    def _node_used(self, node: FakeNode) -> dict[str, Any]:
        used: dict[str, Any] = {"cpu": 0, "mem": 0, "gpus": set()}
        for a in self.allocs.values():
            if a["NodeID"] != node.id or a["ClientStatus"] not in ("pending", "running"):
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

    def _place(self, job: dict[str, Any]) -> tuple[FakeNode | None, str]:
        group = job["TaskGroups"][0]
        devices = [d for t in group["Tasks"] for d in t.get("Resources", {}).get("Devices", [])]
        reasons = []
        for node in self.nodes:
            if node.status != "ready":
                continue
            if "*" not in job.get("Datacenters", ["*"]) and node.datacenter not in job["Datacenters"]:
                continue
            pool = job.get("NodePool", "default")
            if pool != "all" and node.pool != pool:
                continue
            if not all(self._holds(node, c) for c in job.get("Constraints", [])):
                reasons.append(f"{node.name}: constraint")
                continue
            used = self._node_used(node)
            ok = True
            for d in devices:
                models = [m for m in node.gpus if all(
                    c["LTarget"] != "${device.model}" or m == c["RTarget"] for c in d.get("Constraints", []))]
                free = [i for m in models for i in node.device_ids(m) if i not in used["gpus"]]
                if len(free) < d["Count"]:
                    ok = False
                    reasons.append(f"{node.name}: devices exhausted")
            if ok:
                return node, ""
        return None, "; ".join(reasons) or "no node in the job's datacenters and node pool"

    def _allocate(self, job: dict[str, Any], node: FakeNode) -> dict[str, Any]:
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
                    if all(c["LTarget"] != "${device.model}" or model == c["RTarget"] for c in d.get("Constraints", [])):
                        free = [i for i in node.device_ids(model) if i not in used["gpus"]][: d["Count"]]
                        used["gpus"].update(free)
                        devs.append({"Vendor": "nvidia", "Type": "gpu", "Name": model, "DeviceIDs": free})
                        break
            if devs:
                res["Devices"] = devs
            tasks_res[t["Name"]] = res
        ports = []
        for net in group.get("Networks", []):
            for i, p in enumerate(net.get("DynamicPorts", [])):
                ports.append({"Label": p["Label"], "Value": 20000 + len(self.allocs) * 10 + i, "To": p.get("To", 0), "HostIP": node.address})
        idx = self._next()
        alloc_id = str(uuid.uuid4())
        return {
            "ID": alloc_id,
            "EvalID": str(uuid.uuid4()),
            "Name": f"{job['ID']}.{group['Name']}[0]",
            "Namespace": job.get("Namespace", "default"),
            "NodeID": node.id,
            "NodeName": node.name,
            "JobID": job["ID"],
            "TaskGroup": group["Name"],
            "DesiredStatus": "run",
            "ClientStatus": "pending",
            "ClientDescription": "",
            "TaskStates": {
                t["Name"]: {
                    "State": "pending",
                    "Failed": False,
                    "Restarts": 0,
                    "Events": [self._event("Received", "Task received by client"), self._event("Task Setup", "Building Task Directory")],
                }
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
        }

    def _start(self, a: dict[str, Any]) -> None:
        if a["ClientStatus"] != "pending":
            return
        a["ClientStatus"] = "running"
        for ts in a["TaskStates"].values():
            ts["State"] = "running"
            ts["StartedAt"] = "2026-01-01T00:00:00Z"
            ts["Events"].append(self._event("Started", "Task started by client"))
        self._touch(a)

    def _advance(self, job_id: str | None = None) -> None:
        for a in self.allocs.values():
            if job_id is None or a["JobID"] == job_id:
                self._start(a)

    @staticmethod
    def _stub(a: dict[str, Any], job_type: str) -> dict[str, Any]:
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

    # -- HTTP -----------------------------------------------------------
    def _make_app(self) -> FastAPI:
        app = FastAPI()
        fake = self

        def reply(schema: str, body: Any, status: int = 200) -> JSONResponse:
            nomad_spec.validate(schema, body)  # the fake must answer what the spec says
            return JSONResponse(body, status_code=status, headers={"X-Nomad-Index": str(fake.index)})

        @app.middleware("http")
        async def _auth_and_record(request: Request, call_next: Any) -> Response:
            fake.requests.append((request.method, request.url.path, dict(request.query_params)))
            if fake.token is not None and request.headers.get("X-Nomad-Token") != fake.token:
                return PlainTextResponse("Permission denied", status_code=403)
            return await call_next(request)

        def ns(request: Request) -> str:
            return request.query_params.get("namespace", "default")

        def find_job(request: Request, job_id: str) -> dict[str, Any] | None:
            return fake.jobs.get((ns(request), job_id))

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
                job = {**job, "Namespace": namespace, "Status": "pending", "Stop": False}
                job["CreateIndex"] = job["ModifyIndex"] = job["JobModifyIndex"] = fake._next()
                fake.jobs[(namespace, job["ID"])] = job
                node, reason = fake._place(job)
                eval_id = str(uuid.uuid4())
                if node is not None:
                    alloc = fake._allocate(job, node)
                    fake.allocs[alloc["ID"]] = alloc
                    job["Status"] = "running"
                else:
                    job["StatusDescription"] = f"placement failed: {reason}"
            return reply("JobRegisterResponse", {"EvalID": eval_id, "EvalCreateIndex": fake.index,
                                                 "JobModifyIndex": job["JobModifyIndex"], "Warnings": "",
                                                 "KnownLeader": True, "LastIndex": fake.index})

        @app.get("/v1/job/{job_id}")
        async def get_job(request: Request, job_id: str) -> Response:
            job = find_job(request, job_id)
            if job is None:
                return PlainTextResponse("job not found", status_code=404)
            return reply("Job", job)

        @app.get("/v1/job/{job_id}/allocations")
        async def job_allocs(request: Request, job_id: str) -> Response:
            job = find_job(request, job_id)
            if job is None:
                return reply("[AllocationListStub]", [])
            with fake.lock:
                fake._advance(job_id)
                allocs = [fake._stub(a, job["Type"]) for a in fake.allocs.values()
                          if a["JobID"] == job_id and a["Namespace"] == job["Namespace"]]
            return reply("[AllocationListStub]", allocs)

        @app.get("/v1/job/{job_id}/summary")
        async def job_summary(request: Request, job_id: str) -> Response:
            job = find_job(request, job_id)
            if job is None:
                return PlainTextResponse("job not found", status_code=404)
            counts = {"Queued": 0, "Starting": 0, "Running": 0, "Complete": 0, "Failed": 0, "Lost": 0, "Unknown": 0}
            allocs = [a for a in fake.allocs.values() if a["JobID"] == job_id]
            if not allocs:
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
                    if a["JobID"] == job_id and a["ClientStatus"] in ("pending", "running"):
                        a["DesiredStatus"] = "stop"
                        a["ClientStatus"] = "complete"
                        for ts in a["TaskStates"].values():
                            ts["State"] = "dead"
                            ts["Events"].append(fake._event("Killed", "Task successfully killed"))
                        fake._touch(a)
                if request.query_params.get("purge") == "true":
                    del fake.jobs[key]
                    for aid in [aid for aid, a in fake.allocs.items() if a["JobID"] == job_id]:
                        del fake.allocs[aid]
                else:
                    job.update(Stop=True, Status="dead")
                    job["ModifyIndex"] = job["JobModifyIndex"] = fake._next()
            return reply("JobDeregisterResponse", {"EvalID": str(uuid.uuid4()), "EvalCreateIndex": fake.index,
                                                   "JobModifyIndex": fake.index})

        @app.get("/v1/allocation/{alloc_id}")
        async def get_alloc(alloc_id: str) -> Response:
            with fake.lock:
                a = fake.allocs.get(alloc_id)
                if a is None:
                    return PlainTextResponse("alloc not found", status_code=404)
                fake._start(a)
                job = fake.jobs.get((a["Namespace"], a["JobID"]))
                body = {**a, "Job": job} if job else dict(a)
            return reply("Allocation", body)

        @app.get("/v1/client/fs/logs/{alloc_id}")
        async def logs(request: Request, alloc_id: str) -> Response:
            q = request.query_params
            if alloc_id not in fake.allocs:
                return PlainTextResponse("Unknown allocation", status_code=404)
            if not q.get("task") or q.get("type") not in ("stdout", "stderr"):
                return PlainTextResponse("must include task and type (stdout|stderr)", status_code=400)
            if q.get("plain") != "true":
                return PlainTextResponse("fake Nomad serves plain=true logs only", status_code=400)
            text = fake.logs.get((alloc_id, q["task"], q["type"]), "")
            data = text.encode()
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
            for a in fake.allocs.values():
                if a["NodeID"] == node_id:
                    job = fake.jobs.get((a["Namespace"], a["JobID"]))
                    out.append(fake._stub(a, job["Type"] if job else "service"))
            return reply("[AllocationListStub]", out)

        return app


class FakeNomadServer:
    """Runs a ``FakeNomad`` with uvicorn in a thread on a free local port."""

    def __init__(self, fake: FakeNomad) -> None:
        self.fake = fake
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> FakeNomadServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake Nomad did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
