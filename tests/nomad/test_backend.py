"""NomadBackend against the spec-validating fake Nomad."""

from __future__ import annotations

import httpx
import pytest

from ai4lab.backends.nomad import NomadBackend, NomadError, status_from_allocations
from ai4lab.nomad import NomadJobSpec



def backend(server, federation, **kw) -> NomadBackend:
    return NomadBackend(server.address, token="secret-token", namespace="default", federation=federation, **kw)


def module_spec(**kw) -> NomadJobSpec:
    base = dict(kind="module", name="demo", owner="alice", project="ai4eosc", image="ai4oshub/demo:latest",
                cpu_cores=2, memory_mb=4000)
    return NomadJobSpec(**(base | kw))


async def test_module_lifecycle(fake_nomad, federation) -> None:
    b = backend(fake_nomad, federation)
    state = await b.submit(module_spec(gpu_count=1, gpu_model="Tesla T4"))
    assert state["job_id"] == "alice-module-demo" and state["eval_id"]
    fake = fake_nomad.fake
    assert fake.alloc_of(state["job_id"])["NodeName"] == "gpu1"
    first = await b.status(state)
    assert first.running  # pending or already running, depending on timing
    fake.wait_running(state["job_id"])
    st = await b.status(state)
    assert st.running and st.reason == "running on gpu1"
    eps = await b.endpoints(state)
    assert set(eps) == {"api"} and eps["api"].startswith("http://10.0.0.2:")
    fake.set_logs(state["job_id"], "line1\nline2\nline3\n", "warn\n")
    assert await b.logs(state) == "line1\nline2\nline3\nwarn\n"
    assert await b.logs(state, tail=2) == "line3\nwarn\n"
    await b.stop(state)
    assert ("DELETE", "/v1/job/alice-module-demo", {"namespace": "default", "region": "global", "purge": "true"}) in fake.requests
    gone = await b.status(state)
    assert not gone.running and "not found" in gone.reason
    await b.stop(state)  # idempotent


async def test_stop_without_purge_keeps_job(fake_nomad, federation) -> None:
    b = backend(fake_nomad, federation, purge=False)
    state = await b.submit(module_spec())
    fake_nomad.fake.wait_running(state["job_id"])
    await b.stop(state)
    st = await b.status(state)
    assert not st.running and st.reason == "stopped"


async def test_training_exit_codes_and_failures(fake_nomad, federation) -> None:
    b = backend(fake_nomad, federation)
    fake = fake_nomad.fake
    ok = await b.submit(NomadJobSpec(kind="training", name="t1", owner="alice", project="ai4eosc", image="img"))
    fake.finish(ok["job_id"], 0)
    st = await b.status(ok)
    assert (st.running, st.exit_code, st.reason) == (False, 0, "completed")
    bad = await b.submit(NomadJobSpec(kind="training", name="t2", owner="alice", project="ai4eosc", image="img"))
    fake.finish(bad["job_id"], 3)
    st = await b.status(bad)
    assert not st.running and st.exit_code == 3 and "failed" in st.reason
    pull = await b.submit(NomadJobSpec(kind="training", name="t3", owner="alice", project="ai4eosc", image="nope"))
    fake.fail(pull["job_id"], "Failed to pull `nope`: manifest unknown")
    st = await b.status(pull)
    assert not st.running and st.exit_code == 1 and "Failed to pull `nope`" in st.reason
    lost = await b.submit(NomadJobSpec(kind="training", name="t4", owner="alice", project="ai4eosc", image="img"))
    node = fake.alloc_of(lost["job_id"])["NodeName"]
    fake.lose_node(node)  # rescheduled on the other node of the project's datacenter
    st = await b.status(lost)
    assert st.running and fake.alloc_of(lost["job_id"])["NodeName"] != node


async def test_node_loss_without_replacement(fake_nomad, federation) -> None:
    b = backend(fake_nomad, federation)
    fake = fake_nomad.fake
    state = await b.submit(NomadJobSpec(kind="training", name="g", owner="bob", project="imagine", image="img",
                                        gpu_count=1, gpu_model="NVIDIA A100"))
    fake.wait_running(state["job_id"])
    fake.lose_node("gpu2")
    st = await b.status(state)
    assert not st.running
    assert st.reason.startswith("lost: alloc is lost since its node gpu2 is down; not rescheduled: no node can run it")


async def test_placement_failure_is_pending_with_reason(fake_nomad, federation) -> None:
    b = backend(fake_nomad, federation)
    # imagine may use psnc's A100 node, but there is a single A100: the second job cannot be placed
    spec = NomadJobSpec(kind="training", name="a", owner="bob", project="imagine", image="img",
                        gpu_count=1, gpu_model="NVIDIA A100")
    first = await b.submit(spec)
    assert fake_nomad.fake.alloc_of(first["job_id"])["NodeName"] == "gpu2"
    second = await b.submit(spec.model_copy(update={"name": "b"}))
    st = await b.status(second)
    assert st.running and st.reason.startswith("pending: not placed yet (no node can run it: group usergroup: ")
    assert "3 node(s) evaluated in ifca, psnc; 3 exhausted (no free 1 GPU(s) of model NVIDIA A100)" in st.reason
    assert await b.logs(second) == "" and await b.endpoints(second) == {}
    watched = await anext(b.watch(second, wait=1))
    assert watched["ID"] is None and "no free 1 GPU(s) of model NVIDIA A100" in watched["unplaced"]
    await b.stop(first)  # the GPU frees up: the blocked evaluation places the second job
    fake_nomad.fake.wait_running(second["job_id"])
    assert (await b.status(second)).reason == "running on gpu2"


async def test_watch_follows_task_events(fake_nomad, federation) -> None:
    b = backend(fake_nomad, federation)
    state = await b.submit(module_spec())
    seen: list[str] = []
    answers = 0
    async for alloc in b.watch(state, wait=5):
        answers += 1
        seen = [e["Type"] for e in alloc["TaskStates"]["main"]["Events"]]
        if alloc["ClientStatus"] == "running":
            break
    assert seen == ["Received", "Task Setup", "Driver", "Started"]
    blocking = [q for m, p, q in fake_nomad.fake.requests if p.startswith("/v1/allocation/") and "index" in q]
    # every answer after the first came from a blocking query (on a busy machine the allocation
    # may already run when it is first read, and then there is nothing to wait for)
    assert len(blocking) >= answers - 1 and all(q["wait"] == "5s" for q in blocking)


async def test_capacity_per_datacenter(fake_nomad, federation) -> None:
    b = backend(fake_nomad, federation)
    await b.submit(module_spec(gpu_count=1, gpu_model="Tesla T4"))
    cap = await b.capacity()
    ifca, psnc = cap["datacenters"]["ifca"], cap["datacenters"]["psnc"]
    assert ifca["gpus"] == {"Tesla T4": {"total": 2, "free": 1, "max_free_on_one_node": 1}}
    assert psnc["gpus"] == {"NVIDIA A100": {"total": 1, "free": 1, "max_free_on_one_node": 1}}
    assert ifca["nodes"] == 2 and ifca["memory_mb_free"] == 2 * 32768 - 4000
    assert sorted(ifca["node_pools"]) == ["default", "gpu"]
    assert ifca["cpu_mhz_free"] == ifca["cpu_mhz_total"] - 2 * 2000


async def test_errors_are_clear(fake_nomad, federation) -> None:
    b = NomadBackend(fake_nomad.address, token="wrong")
    with pytest.raises(NomadError, match="HTTP 403: Permission denied"):
        await b.submit_job({"ID": "x", "TaskGroups": [{"Name": "g"}]})
    good = backend(fake_nomad, federation)
    with pytest.raises(NomadError, match="(?s)HTTP 400.*MemoryMB"):
        await good.submit_job({"ID": "x", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Resources": {"MemoryMB": "lots"}}]}]})


async def test_fake_rejects_unknown_fields(fake_nomad) -> None:
    async with httpx.AsyncClient(base_url=fake_nomad.address, headers={"X-Nomad-Token": "secret-token"}) as c:
        r = await c.post("/v1/jobs", json={"Job": {"ID": "x", "TaskGroups": [{"Name": "g", "Taskz": []}]}})
        assert r.status_code == 400 and "'Taskz' was unexpected" in r.text
        r = await c.get("/v1/job/x/allocs")
        assert r.status_code == 404 and "not a path of the Nomad API spec" in r.text
        r = await c.post("/v1/nodes")
        assert r.status_code == 404 and "POST is not allowed on /v1/nodes" in r.text


def test_status_from_allocations_pure() -> None:
    job = {"ID": "j"}
    assert status_from_allocations(None, []).reason.startswith("job not found")
    pending = {"ClientStatus": "pending", "CreateIndex": 1,
               "TaskStates": {"main": {"Events": [{"Type": "Driver", "DisplayMessage": "Downloading image"}]}}}
    assert status_from_allocations(job, [pending]).reason == "pending: Driver: Downloading image"
    old = {"ClientStatus": "failed", "CreateIndex": 1}
    new = {"ClientStatus": "running", "CreateIndex": 2, "NodeName": "n2"}
    assert status_from_allocations(job, [new, old]).reason == "running on n2"  # the replacement counts
    assert status_from_allocations(job, [{"ClientStatus": "unknown", "CreateIndex": 1}]).running
