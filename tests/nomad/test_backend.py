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
    first = await b.status(state)  # the listing moves the allocation to running
    assert first.running
    st = await b.status(state)
    assert st.running and st.reason == "running on gpu1"
    eps = await b.aendpoints(state)
    assert set(eps) == {"api"} and eps["api"].startswith("http://10.0.0.2:")
    assert b.endpoints(state) == eps
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
    await b.status(state)
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
    fake.lose_node(lost["job_id"])
    st = await b.status(lost)
    assert not st.running and "lost" in st.reason


async def test_placement_failure_is_pending_with_reason(fake_nomad, federation) -> None:
    b = backend(fake_nomad, federation)
    # imagine may use psnc's A100 node, but there is a single A100: the second job cannot be placed
    spec = NomadJobSpec(kind="training", name="a", owner="bob", project="imagine", image="img",
                        gpu_count=1, gpu_model="NVIDIA A100")
    first = await b.submit(spec)
    assert fake_nomad.fake.alloc_of(first["job_id"])["NodeName"] == "gpu2"
    second = await b.submit(spec.model_copy(update={"name": "b"}))
    st = await b.status(second)
    assert st.running and st.reason.startswith("pending: not placed yet") and "devices exhausted" in st.reason
    assert await b.logs(second) == "" and await b.aendpoints(second) == {}


async def test_capacity_per_datacenter(fake_nomad, federation) -> None:
    b = backend(fake_nomad, federation)
    await b.submit(module_spec(gpu_count=1, gpu_model="Tesla T4"))
    cap = await b.acapacity()
    assert cap == b.capacity()
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
    with pytest.raises(TypeError, match="NomadJobSpec"):
        from ai4lab.backends.base import JobSpec
        await good.submit(JobSpec(name="x", command=["true"]))


async def test_fake_rejects_unknown_fields(fake_nomad) -> None:
    async with httpx.AsyncClient(base_url=fake_nomad.address, headers={"X-Nomad-Token": "secret-token"}) as c:
        r = await c.put("/v1/jobs", json={"Job": {"ID": "x", "TaskGroups": [{"Name": "g", "Taskz": []}]}})
    assert r.status_code == 400 and "'Taskz' was unexpected" in r.text


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
