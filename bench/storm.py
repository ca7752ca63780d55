"""Login storms: N users start their server at once, through the hub REST API, on each hub.

Each user's client posts ``/hub/api/users/<name>/server`` and then follows the
spawn's progress stream (what JupyterHub's spawn-pending page does) until it
says ready; the time to ready counts from the moment the storm began. Meanwhile
four probers read user models (``/hub/api/users/<name>``) every quarter second:
their latency is the hub's responsiveness during the storm, under the same load
on both hubs. Then every server is stopped at once (DELETE), and the time until
none is left is the stop-all time. The last storm's sessions stay, and more are
started a batch at a time until 100 are held idle: the hub API's latency then,
memory per session, and Ctrl-C with all of them running.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import psutil

from bench.load import percentile

#: Readers of user models during a storm (the hub's responsiveness): the same load on both hubs.
PROBERS = 4
PROBE_EVERY = 0.25


class Hub(Protocol):
    name: str
    token: str

    @property
    def url(self) -> str: ...

    def add_users(self, names: list[str]) -> None: ...

    def service_processes(self) -> dict[str, list[psutil.Process]]: ...

    def log(self) -> str: ...


def _client(hub: Hub, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=hub.url, headers={"Authorization": f"token {hub.token}"}, timeout=300,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def stats(values: list[float], digits: int = 2) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), digits), "p95": round(percentile(values, 95), digits),
            "max": round(max(values), digits), "n": len(values)}


async def _read_user_models(
    api: httpx.AsyncClient,
    names: list[str],
    clients: int,
    every: float,
    keep_going: Callable[[], bool],
    latencies_ms: list[float],
) -> None:
    """``clients`` loops reading the models of ``names`` round robin, ``every`` seconds apart, while
    ``keep_going()``; each read's latency goes to ``latencies_ms`` (kept if a read fails)."""

    async def loop(k: int) -> None:
        i = k
        while keep_going():
            t = time.monotonic()
            (await api.get(f"/hub/api/users/{names[i % len(names)]}")).raise_for_status()
            latencies_ms.append((time.monotonic() - t) * 1000)
            i += clients
            await asyncio.sleep(every)

    await asyncio.gather(*(loop(k) for k in range(clients)))


async def _storm(hub: Hub, names: list[str], timeout: float) -> dict[str, Any]:
    """Every user starts at once and follows their spawn's progress; a prober reads user models meanwhile."""
    probes: list[float] = []
    async with _client(hub, len(names) + PROBERS + 5) as api:
        t0 = time.monotonic()
        done = asyncio.Event()

        async def one(name: str) -> float:
            r = await api.post(f"/hub/api/users/{name}/server")
            if r.status_code == 201:
                return time.monotonic() - t0
            if r.status_code != 202:
                raise RuntimeError(f"{hub.name}: start of {name} refused: {r.status_code} {r.text[:300]}")
            # what the spawn-pending page does: one event stream per user, until "ready" or "failed"
            async with api.stream("GET", f"/hub/api/users/{name}/server/progress") as events:
                async for line in events.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if event.get("ready"):
                        return time.monotonic() - t0
                    if event.get("failed"):
                        raise RuntimeError(f"{hub.name}: {name}'s server failed: {event.get('message')}")
            raise RuntimeError(f"{hub.name}: {name}'s progress ended without ready")

        prober = asyncio.create_task(
            _read_user_models(api, names, PROBERS, PROBE_EVERY, lambda: not done.is_set(), probes)
        )
        try:
            ready = await asyncio.wait_for(asyncio.gather(*(one(n) for n in names)), timeout)
        finally:
            done.set()
            await asyncio.gather(prober, return_exceptions=True)
    return {"ready_s": stats(list(ready)), "hub_api_ms": stats(probes, 1)}


async def stop_all(hub: Hub, names: list[str], timeout: float = 300) -> float:
    """Seconds from DELETE of every server until the hub lists none of them running or stopping."""
    async with _client(hub, len(names) + 5) as api:
        t0 = time.monotonic()
        await asyncio.gather(*(api.delete(f"/hub/api/users/{n}/server") for n in names))
        while time.monotonic() - t0 < timeout:
            users = (await api.get("/hub/api/users", params={"state": "active", "limit": 1000})).json()
            if not any(u["name"] in names for u in users):
                return round(time.monotonic() - t0, 2)
            await asyncio.sleep(0.25)
    raise TimeoutError(f"{hub.name}: servers still active {timeout:g}s after the stop")


async def start_gradually(hub: Hub, names: list[str], at_once: int = 10, timeout: float = 600) -> None:
    """Start servers ``at_once`` at a time (not a storm: to hold many idle sessions)."""
    for i in range(0, len(names), at_once):
        await _storm(hub, names[i: i + at_once], timeout)


async def idle_api_latency(hub: Hub, names: list[str], seconds: float = 15, clients: int = 10) -> dict[str, float]:
    """Hub API latency while every session idles: ``clients`` loops reading user models."""
    lat: list[float] = []
    async with _client(hub, clients) as api:
        deadline = time.monotonic() + seconds
        await _read_user_models(api, names, clients, 0.1, lambda: time.monotonic() < deadline, lat)
    return stats(lat, 1)


def storm(hub: Hub, names: list[str], timeout: float = 600) -> dict[str, Any]:
    hub.add_users(names)
    result = asyncio.run(_storm(hub, names, timeout))
    return result


class Stoppable(Hub, Protocol):
    def start(self) -> None: ...

    def stop(self) -> float: ...


def run_hub(hub: Stoppable, sizes: tuple[int, ...] = (10, 20, 40), idle: int = 100) -> dict[str, Any]:
    """One hub through every storm; the last storm's sessions stay, more join until ``idle`` are held; Ctrl-C."""
    hub.start()
    out: dict[str, Any] = {"hub": hub.name}
    try:
        time.sleep(3)  # services settle (MLflow's first requests) before the idle figures
        out["services_idle_mb"] = services_memory_mb(hub)
        out["storms"] = {}
        for n in sizes:
            names = [f"s{n}u{i}" for i in range(n)]
            result = storm(hub, names)
            if n == sizes[-1]:  # kept running: the first of the idle sessions
                result["memory"] = sessions_memory_mb(hub, names)
            else:
                result["stop_all_s"] = asyncio.run(stop_all(hub, names))
            out["storms"][str(n)] = result
            print(f"  {hub.name}: {n} at once: ready p50 {result['ready_s']['p50']} s, "
                  f"hub API p95 {result['hub_api_ms']['p95']} ms", flush=True)
        held = [f"s{sizes[-1]}u{i}" for i in range(sizes[-1])]
        more = [f"idle{i:03d}" for i in range(idle - len(held))]
        hub.add_users(more)
        t0 = time.monotonic()
        asyncio.run(start_gradually(hub, more, at_once=30))
        started = time.monotonic() - t0
        time.sleep(5)  # the last ones finish their first requests: idle from here
        names = held + more
        out["idle"] = {
            "sessions": idle,
            "started_in_s": round(started, 1),
            "started": len(more),
            "hub_api_ms": asyncio.run(idle_api_latency(hub, names)),
            "memory": sessions_memory_mb(hub, names),
            "services_mb": services_memory_mb(hub),
        }
        print(f"  {hub.name}: {idle} idle sessions: hub API p95 {out['idle']['hub_api_ms']['p95']} ms", flush=True)
    finally:
        out["ctrl_c_s"] = round(hub.stop(), 2)
        out["tracebacks_in_hub_log"] = hub.log().count("Traceback")
    return out


def sessions_memory_mb(hub: Hub, names: list[str]) -> dict[str, float]:
    """Memory of the users' servers (PSS of each server's process tree), per session."""
    trees = session_trees(hub, names)
    per = [sum(_pss(p) for p in tree) / 2**20 for tree in trees.values()]
    return {"sessions": len(per), "per_session_mb": round(sum(per) / max(1, len(per)), 1),
            "total_mb": round(sum(per), 1)}


def services_memory_mb(hub: Hub) -> dict[str, float]:
    return {name: round(sum(_pss(p) for p in procs) / 2**20, 1) for name, procs in hub.service_processes().items()}


def session_trees(hub: Hub, names: list[str]) -> dict[str, list[psutil.Process]]:
    """The process tree of each user's server, found by its ``JUPYTERHUB_USER`` and hub API URL."""
    wanted = set(names)
    hub_api = _hub_api_url(hub)
    trees: dict[str, list[psutil.Process]] = {}
    for p in psutil.process_iter():
        try:
            if "jupyterhub-singleuser" not in " ".join(p.cmdline()):
                continue
            env = p.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        user = env.get("JUPYTERHUB_USER")
        if user in wanted and env.get("JUPYTERHUB_API_URL", "").startswith(hub_api):
            trees[user] = [p, *p.children(recursive=True)]
    return trees


def _hub_api_url(hub: Hub) -> str:
    """The hub's internal API URL as sessions see it (its port is the hub's, not the proxy's)."""
    for p in hub.service_processes()["hub"]:
        for c in p.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr.port != int(hub.url.rsplit(":", 1)[1]):
                return f"http://127.0.0.1:{c.laddr.port}/hub/api"
    raise RuntimeError(f"{hub.name}: no hub API port found")


def _pss(p: psutil.Process) -> int:
    try:
        return p.memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
