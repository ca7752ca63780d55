"""Nomad backend: deployments are Nomad jobs, rendered by ``ai4lab.nomad.render_job``.

Thin on purpose: the job is built by the pure builders, this module only talks
to Nomad's HTTP API (paths and shapes of ``../shared/specs/nomad-openapi-v1.yaml``,
plus ``/v1/client/fs/logs``) with httpx. The state kept by the caller is
``{"job_id", "namespace", "region", "eval_id"}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from ai4lab.backends.base import JobStatus
from ai4lab.nomad.config import Federation, NomadDefaults
from ai4lab.nomad.jobs import GPU_DEVICE, MAIN_TASK, NomadJobSpec, register_request, render_job

_LIVE = ("pending", "running")


class NomadError(RuntimeError):
    """Nomad answered with an error status."""

    def __init__(self, method: str, path: str, status: int, text: str) -> None:
        super().__init__(f"Nomad {method} {path}: HTTP {status}: {text.strip()[:2000]}")
        self.status = status
        self.text = text


def _latest(allocs: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(allocs, key=lambda a: (a.get("CreateIndex", 0), a.get("ModifyIndex", 0)), default=None)


def _last_message(task_state: dict[str, Any] | None, failing_only: bool = False) -> str:
    """The newest task event worth showing (a failing one when asked)."""
    events = (task_state or {}).get("Events") or []
    for ev in reversed(events):
        if failing_only and not (
            ev.get("FailsTask")
            or ev.get("DriverError")
            or ev.get("Type") in ("Driver Failure", "Setup Failure", "Failed Validation")
        ):
            continue
        msg = ev.get("DisplayMessage") or ev.get("Message") or ev.get("DriverError") or ""
        if msg:
            return f"{ev.get('Type', 'event')}: {msg}" if ev.get("Type") else msg
    return ""


def _exit_code(task_state: dict[str, Any] | None) -> int | None:
    for ev in reversed((task_state or {}).get("Events") or []):
        if ev.get("Type") == "Terminated" and "ExitCode" in ev:
            return int(ev["ExitCode"])
    return None


def _gpu_wish(job: dict[str, Any] | None) -> str:
    """ "1 GPU (Tesla T4)" from the job's device requests, for messages."""
    for group in (job or {}).get("TaskGroups") or []:
        for t in group.get("Tasks") or []:
            for d in (t.get("Resources") or {}).get("Devices") or []:
                if d.get("Name") == GPU_DEVICE:
                    models = [c["RTarget"] for c in d.get("Constraints") or [] if c.get("LTarget") == "${device.model}"]
                    return f"{d.get('Count', 1)} GPU(s)" + (f" of model {models[0]}" if models else "")
    return ""


def describe_placement_failure(metrics: dict[str, dict[str, Any]], job: dict[str, Any] | None = None) -> str:
    """One line from an evaluation's ``FailedTGAllocs`` (``AllocationMetric`` per group), like ``nomad job status``."""
    parts = []
    for group, m in metrics.items():
        evaluated = m.get("NodesEvaluated") or 0
        dcs = m.get("NodesAvailable") or {}
        bits = [f"{evaluated} node(s) evaluated" + (f" in {', '.join(sorted(dcs))}" if dcs else "")]
        if evaluated == 0:
            bits = ["no ready node in the job's datacenters and node pool"]
        for what, n in sorted((m.get("ConstraintFiltered") or {}).items()):
            bits.append(f"{n} filtered by constraint {what}")
        for what, n in sorted((m.get("DimensionExhausted") or {}).items()):
            if what.startswith("devices") and _gpu_wish(job):
                what = f"no free {_gpu_wish(job)}"
            bits.append(f"{n} exhausted ({what})")
        for what, n in sorted((m.get("ClassFiltered") or {}).items()):
            bits.append(f"{n} filtered by class {what}")
        parts.append(f"group {group}: " + "; ".join(bits))
    return "no node can run it: " + " | ".join(parts)


def placement_failure(evals: list[dict[str, Any]], job: dict[str, Any] | None = None) -> str | None:
    """Why the newest scheduling of a job left allocations unplaced (None when it did not)."""
    done = [e for e in evals if e.get("Status") in ("complete", "failed")]
    newest = max(done, key=lambda e: e.get("CreateIndex", 0), default=None)
    if newest is None or not newest.get("FailedTGAllocs"):
        return None
    return describe_placement_failure(newest["FailedTGAllocs"], job)


def status_from_allocations(
    job: dict[str, Any] | None,
    allocs: list[dict[str, Any]],
    task: str = MAIN_TASK,
    unplaced: str | None = None,
) -> JobStatus:
    """A ``JobStatus`` from the job, its allocations and why it is not placed (pure, unit-tested).

    ``running`` means "not finished": a job still waiting for placement or whose
    allocation is pending is running with a ``pending: ...`` reason. ``unplaced``
    is ``placement_failure(...)`` of the job's evaluations.
    """
    if job is None:
        return JobStatus(running=False, reason="job not found in Nomad (stopped and purged?)")
    alloc = _latest(allocs)
    if alloc is None:
        if job.get("Stop"):
            return JobStatus(running=False, reason="stopped")
        why = unplaced or job.get("StatusDescription") or "waiting for the scheduler"
        return JobStatus(running=True, reason=f"pending: not placed yet ({why})")
    ts = (alloc.get("TaskStates") or {}).get(task)
    client = alloc.get("ClientStatus")
    if client == "pending":
        return JobStatus(running=True, reason=f"pending: {_last_message(ts) or 'allocation placed'}")
    if client == "running":
        if job.get("Stop") or alloc.get("DesiredStatus") == "stop":
            return JobStatus(running=True, reason="stopping")
        return JobStatus(running=True, reason=f"running on {alloc.get('NodeName', '?')}")
    if client == "unknown":
        return JobStatus(running=True, reason="node disconnected; waiting for it to come back")
    code = _exit_code(ts)
    if client == "complete":
        if job.get("Stop") or alloc.get("DesiredStatus") == "stop":
            return JobStatus(running=False, exit_code=code, reason="stopped")
        return JobStatus(running=False, exit_code=0 if code is None else code, reason="completed")
    if client == "lost":
        again = f"; not rescheduled: {unplaced}" if unplaced else ""
        return JobStatus(running=False, reason=f"lost: {alloc.get('ClientDescription') or 'its node is down'}{again}")
    # failed
    msg = _last_message(ts, failing_only=True) or _last_message(ts) or alloc.get("ClientDescription") or "failed"
    return JobStatus(running=False, exit_code=code if code is not None else 1, reason=f"failed: {msg}")


def endpoints_from_allocation(alloc: dict[str, Any]) -> dict[str, str]:
    """``{port label: http://host:port}`` from an allocation's shared network."""
    shared = (alloc.get("AllocatedResources") or {}).get("Shared") or {}
    out: dict[str, str] = {}
    for p in shared.get("Ports") or []:
        if p.get("HostIP") and p.get("Value"):
            out[p["Label"]] = f"http://{p['HostIP']}:{p['Value']}"
    for net in shared.get("Networks") or []:
        for p in (net.get("DynamicPorts") or []) + (net.get("ReservedPorts") or []):
            if p.get("Label") not in out and net.get("IP") and p.get("Value"):
                out[p["Label"]] = f"http://{net['IP']}:{p['Value']}"
    return out


def capacity_from_nodes(nodes: list[dict[str, Any]], allocs_by_node: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Free and total CPU (MHz), memory (MB) and GPUs per model, per datacenter (pure)."""
    dcs: dict[str, dict[str, Any]] = {}
    for node in nodes:
        if (
            node.get("Status") != "ready"
            or node.get("SchedulingEligibility", "eligible") != "eligible"
            or node.get("Drain")
        ):
            continue
        res = node.get("NodeResources") or {}
        reserved = node.get("ReservedResources") or {}
        cpu = ((res.get("Cpu") or {}).get("CpuShares") or 0) - ((reserved.get("Cpu") or {}).get("CpuShares") or 0)
        mem = ((res.get("Memory") or {}).get("MemoryMB") or 0) - ((reserved.get("Memory") or {}).get("MemoryMB") or 0)
        gpus: dict[str, set[str]] = {}
        for dev in res.get("Devices") or []:
            if f"{dev.get('Vendor')}/{dev.get('Type')}" == GPU_DEVICE:
                gpus.setdefault(dev.get("Name") or "unknown", set()).update(
                    i["ID"] for i in dev.get("Instances") or [] if i.get("Healthy", True)
                )
        used_cpu = used_mem = 0
        used_gpus: set[str] = set()
        for a in allocs_by_node.get(node["ID"], []):
            if a.get("ClientStatus") not in _LIVE or a.get("DesiredStatus", "run") != "run":
                continue
            for t in ((a.get("AllocatedResources") or {}).get("Tasks") or {}).values():
                used_cpu += (t.get("Cpu") or {}).get("CpuShares") or 0
                used_mem += (t.get("Memory") or {}).get("MemoryMB") or 0
                for d in t.get("Devices") or []:
                    used_gpus.update(d.get("DeviceIDs") or [])
        dc = dcs.setdefault(
            node.get("Datacenter", "?"),
            {
                "nodes": 0,
                "cpu_mhz_total": 0,
                "cpu_mhz_free": 0,
                "memory_mb_total": 0,
                "memory_mb_free": 0,
                "gpus": {},
                "node_pools": [],
            },
        )
        dc["nodes"] += 1
        dc["cpu_mhz_total"] += cpu
        dc["cpu_mhz_free"] += max(0, cpu - used_cpu)
        dc["memory_mb_total"] += mem
        dc["memory_mb_free"] += max(0, mem - used_mem)
        pool = node.get("NodePool", "default")
        if pool not in dc["node_pools"]:
            dc["node_pools"].append(pool)
        for model, ids in gpus.items():
            g = dc["gpus"].setdefault(model, {"total": 0, "free": 0, "max_free_on_one_node": 0})
            free = len(ids - used_gpus)
            g["total"] += len(ids)
            g["free"] += free
            g["max_free_on_one_node"] = max(g["max_free_on_one_node"], free)
    return {"backend": "nomad", "datacenters": dcs}


class NomadBackend:
    """Submit, watch and stop Nomad jobs over the HTTP API."""

    name = "nomad"

    def __init__(
        self,
        address: str = "http://127.0.0.1:4646",
        token: str | None = None,
        namespace: str = "default",
        region: str | None = None,
        *,
        purge: bool = True,
        verify: bool | str = True,
        cert: tuple[str, str] | None = None,
        timeout: float = 30,
        defaults: NomadDefaults | None = None,
        federation: Federation | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.namespace = namespace
        self.region = region
        self.purge = purge
        self.defaults = defaults
        self.federation = federation
        self._headers = {"X-Nomad-Token": token} if token else {}
        self._client_args: dict[str, Any] = {
            "base_url": self.address,
            "headers": self._headers,
            "verify": verify,
            "timeout": timeout,
        }
        if cert:
            self._client_args["cert"] = cert

    @classmethod
    def from_settings(cls, nomad: Any) -> NomadBackend:
        """The backend of the platform settings' ``nomad`` section (``ai4lab.core.settings.NomadSettings``)."""
        from ai4lab.nomad.config import load_defaults, load_federation

        verify: bool | str = False if nomad.skip_verify else (nomad.ca_cert or True)
        cert = (nomad.client_cert, nomad.client_key) if nomad.client_cert else None
        return cls(
            nomad.address,
            token=nomad.token or None,
            namespace=nomad.namespace,
            region=nomad.region or None,
            purge=nomad.purge,
            verify=verify,
            cert=cert,
            defaults=load_defaults(nomad.defaults_file),
            federation=load_federation(nomad.federation_file) if nomad.federation_file else None,
        )

    # -- HTTP helpers ---------------------------------------------------
    def _params(self, state: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        state = state or {}
        params = {"namespace": state.get("namespace", self.namespace), **extra}
        region = state.get("region", self.region)
        if region:
            params["region"] = region
        return params

    async def _request(self, method: str, path: str, *, allow_404: bool = False, text: bool = False, **kw: Any) -> Any:
        async with httpx.AsyncClient(**self._client_args) as client:
            r = await client.request(method, path, **kw)
        return self._result(method, path, r, allow_404, text)

    async def _blocking(self, path: str, state: dict[str, Any], index: int, wait: float) -> tuple[Any, int]:
        """A blocking query: the answer once its index passes ``index`` (or after ``wait`` s), and the new index.

        Nomad reads ``index`` and ``wait`` as query parameters and answers ``X-Nomad-Index``.
        """
        params = self._params(state, index=index, wait=f"{max(1, int(wait))}s") if index else self._params(state)
        args = {**self._client_args, "timeout": wait + self._client_args["timeout"]}
        async with httpx.AsyncClient(**args) as client:
            r = await client.get(path, params=params)
        body = self._result("GET", path, r, True, False)
        return body, int(r.headers.get("X-Nomad-Index", index or 0))

    @staticmethod
    def _result(method: str, path: str, r: httpx.Response, allow_404: bool, text: bool) -> Any:
        if r.status_code == 404 and allow_404:
            return None
        if r.status_code >= 400:
            raise NomadError(method, path, r.status_code, r.text)
        return r.text if text else r.json()

    # -- jobs -----------------------------------------------------------
    def render(self, spec: NomadJobSpec) -> dict[str, Any]:
        job = render_job(spec, defaults=self.defaults, federation=self.federation)
        if spec.namespace == "default" and self.namespace != "default":
            job["Namespace"] = self.namespace
        return job

    async def submit(self, spec: NomadJobSpec) -> dict[str, Any]:
        """Render and register the job of ``spec``; returns the state to find it again."""
        return await self.submit_job(self.render(spec))

    async def submit_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """Register an already rendered job; returns the state to find it again."""
        body = register_request(job)
        reply = await self._request(
            "POST",
            "/v1/jobs",
            json=body,
            params=self._params({"namespace": job.get("Namespace", self.namespace), "region": job.get("Region")}),
        )
        return {
            "job_id": job["ID"],
            "namespace": job.get("Namespace", self.namespace),
            "region": job.get("Region", self.region),
            "eval_id": reply.get("EvalID", ""),
        }

    async def allocations(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        allocs = await self._request(
            "GET", f"/v1/job/{state['job_id']}/allocations", params=self._params(state), allow_404=True
        )
        return allocs or []

    async def latest_allocation(self, state: dict[str, Any]) -> dict[str, Any] | None:
        stub = _latest(await self.allocations(state))
        if stub is None:
            return None
        return await self._request("GET", f"/v1/allocation/{stub['ID']}", params=self._params(state), allow_404=True)

    async def evaluations(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        return (
            await self._request(
                "GET", f"/v1/job/{state['job_id']}/evaluations", params=self._params(state), allow_404=True
            )
            or []
        )

    async def unplaced(self, state: dict[str, Any], job: dict[str, Any] | None = None) -> str | None:
        """Why the scheduler could not place the job (from its evaluations' ``FailedTGAllocs``), or None."""
        return placement_failure(await self.evaluations(state), job)

    async def status(self, state: dict[str, Any]) -> JobStatus:
        job = await self._request("GET", f"/v1/job/{state['job_id']}", params=self._params(state), allow_404=True)
        if job is None:
            return status_from_allocations(None, [])
        allocs = await self.allocations(state)
        alloc = _latest(allocs)
        unplaced = None
        if alloc is None or alloc.get("ClientStatus") == "lost":
            unplaced = await self.unplaced(state, job)
        return status_from_allocations(job, allocs, unplaced=unplaced)

    async def watch(self, state: dict[str, Any], wait: float = 30) -> AsyncIterator[dict[str, Any]]:
        """Follow a job's newest allocation with blocking queries; yields it each time it changes.

        Yields ``{"ID": None, "unplaced": reason}`` when the scheduler could not place the
        job, so callers can give up with Nomad's own reason instead of waiting.
        """
        index = 0
        job = None
        while True:
            stubs, index = await self._blocking(f"/v1/job/{state['job_id']}/allocations", state, index, wait)
            stub = _latest(stubs or [])
            if stub is not None:
                break
            job = job or await self._request(
                "GET", f"/v1/job/{state['job_id']}", params=self._params(state), allow_404=True
            )
            if job is None:
                raise NomadError("GET", f"/v1/job/{state['job_id']}", 404, "job not found (deregistered?)")
            why = await self.unplaced(state, job)
            if why:
                yield {"ID": None, "unplaced": why}
        alloc_index = 0
        while True:
            alloc, alloc_index = await self._blocking(f"/v1/allocation/{stub['ID']}", state, alloc_index, wait)
            if alloc is None:
                return
            yield alloc

    async def logs(self, state: dict[str, Any], tail: int | None = None, task: str = MAIN_TASK) -> str:
        alloc = _latest(await self.allocations(state))
        if alloc is None:
            return ""
        parts = []
        for stream in ("stdout", "stderr"):
            params = self._params(state, task=task, type=stream, plain="true", origin="start", offset=0)
            text = await self._request(
                "GET", f"/v1/client/fs/logs/{alloc['ID']}", params=params, allow_404=True, text=True
            )
            if text:
                parts.append(text if text.endswith("\n") else text + "\n")
        out = "".join(parts)
        if tail:
            out = "".join(out.splitlines(keepends=True)[-tail:])
        return out

    async def stop(self, state: dict[str, Any], timeout: float = 10) -> None:
        purge = state.get("purge", self.purge)
        await self._request(
            "DELETE",
            f"/v1/job/{state['job_id']}",
            params=self._params(state, purge="true" if purge else "false"),
            allow_404=True,
        )

    async def endpoints(self, state: dict[str, Any]) -> dict[str, str]:
        alloc = await self.latest_allocation(state)
        if alloc is None or alloc.get("ClientStatus") != "running":
            return {}
        return endpoints_from_allocation(alloc)

    async def capacity(self) -> dict[str, Any]:
        nodes = await self._request("GET", "/v1/nodes", params=self._params(resources="true"))
        allocs = {
            n["ID"]: await self._request("GET", f"/v1/node/{n['ID']}/allocations", params=self._params()) or []
            for n in nodes
            if n.get("Status") == "ready"
        }
        return capacity_from_nodes(nodes, allocs)
