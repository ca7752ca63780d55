"""Pure job builders: snapshots per kind, validation against the Nomad spec, rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ai4lab.nomad import KINDS, NomadJobSpec, job_id, load_defaults, load_federation, render_job
from ai4lab.nomad.config import duration_ns
from tests.fakes import nomad_spec

SNAPSHOTS = Path(__file__).parent / "snapshots"

STORAGE = {"type": "webdav", "url": "https://share.example.org/remote.php/dav/files/alice",
           "user": "alice", "password": "app-password"}

SPECS: dict[str, dict[str, Any]] = {
    "ide": {"kind": "ide", "name": "session", "owner": "alice@example.org", "project": "ai4eosc", "ide": "vscode",
            "cpu_cores": 2, "memory_mb": 8000, "disk_mb": 10000, "gpu_count": 1, "gpu_model": "Tesla T4",
            "storage": STORAGE, "env": {"JUPYTERHUB_API_TOKEN": "tok", "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
                                        "JUPYTERHUB_API_URL": "https://hub.example.org/hub/api"}},
    "module": {"kind": "module", "name": "demo-app", "owner": "alice@example.org", "project": "ai4eosc",
               "image": "ai4oshub/ai4os-demo-app:latest", "cpu_cores": 4, "memory_mb": 8000, "disk_mb": 10000,
               "gpu_count": 1, "storage": STORAGE, "ui": True, "meta": {"title": "Demo"}},
    "training": {"kind": "training", "name": "retrain 42", "owner": "alice@example.org", "project": "imagine",
                 "image": "ai4oshub/ai4os-demo-app:latest", "command": ["deepaas-cli", "train", "--epochs", "3"],
                 "cpu_mhz": 4000, "memory_mb": 16000, "gpu_count": 2, "gpu_model": "NVIDIA A100",
                 "storage": {"type": "s3", "url": "https://s3.example.org", "user": "AK", "password": "SK",
                             "provider": "Minio", "remote_path": "alice-bucket/data"},
                 "preferred_datacenters": ["psnc"]},
    "tool": {"kind": "tool", "tool": "flower", "name": "fl-server", "owner": "bob", "project": "ai4eosc",
             "datacenters": ["ifca"], "node_pool": "default", "cpu_cores": 1, "memory_mb": 2000,
             "env": {"FLOWER_ROUNDS": "5"}},
}


@pytest.fixture(scope="module")
def fed():
    return load_federation(Path(__file__).resolve().parents[2] / "config" / "nomad" / "federation.example.yaml")


def render(which: str, fed, **override: Any) -> dict[str, Any]:
    return render_job({**SPECS[which], **override}, federation=fed)


def task(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in job["TaskGroups"][0]["Tasks"] if t["Name"] == name)


@pytest.mark.parametrize("kind", KINDS)
def test_snapshot(kind: str, fed) -> None:
    job = render(kind, fed)
    path = SNAPSHOTS / f"{kind}.json"
    text = json.dumps(job, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}: run with UPDATE_SNAPSHOTS=1 once and review it"
    assert json.loads(path.read_text()) == job, f"rendered {kind} job differs from {path} (UPDATE_SNAPSHOTS=1 to rewrite)"


@pytest.mark.parametrize("kind", KINDS)
def test_valid_against_spec(kind: str, fed) -> None:
    job = render(kind, fed)
    assert nomad_spec.errors("Job", job) == []
    assert nomad_spec.errors("JobRegisterRequest", {"Job": job}) == []


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_spec_valid_without_federation(kind: str) -> None:
    spec = {"kind": kind, "name": "x", "owner": "o", "project": "p"}
    if kind in ("module", "training"):
        spec["image"] = "img"
    if kind == "tool":
        spec |= {"image": "img", "ports": {"http": 8080}, "health_path": "/health"}
    job = render_job(spec)
    assert nomad_spec.errors("Job", job) == []
    assert job["Datacenters"] == ["*"] and "NodePool" not in job


def test_strict_validator_catches_misspelt_fields(fed) -> None:
    job = render("module", fed)
    task(job, "main")["Resources"]["Memory"] = 100  # HCL name, not the JSON API's MemoryMB
    job["TaskGroups"][0]["RestartPolicy"]["Interval"] = "30m"  # JSON API wants nanoseconds
    errs = nomad_spec.errors("Job", job)
    assert any("'Memory' was unexpected" in e for e in errs)
    assert any("RestartPolicy/Interval" in e for e in errs)


def test_validator_reads_spec_from_env(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AI4LAB_SHARED_DIR", str(tmp_path))
    assert nomad_spec.spec_path() == tmp_path / "specs" / "nomad-openapi-v1.yaml"


def test_types_and_policies(fed, defaults) -> None:
    assert render("training", fed)["Type"] == "batch"
    assert render("module", fed)["Type"] == "service"
    group = render("training", fed)["TaskGroups"][0]
    assert group["RestartPolicy"] == defaults.restart["batch"].to_nomad()
    assert group["ReschedulePolicy"]["Attempts"] == 0
    assert render("ide", fed)["TaskGroups"][0]["ReschedulePolicy"]["Interval"] == duration_ns("1h")


def test_owner_meta_and_id(fed) -> None:
    job = render("module", fed)
    assert job["Meta"] == {"title": "Demo", "owner": "alice@example.org", "project": "ai4eosc", "kind": "module"}
    assert job["ID"] == job["Name"] == "alice-example-org-module-demo-app"
    long = NomadJobSpec(kind="module", name="n" * 80, owner="Some Body", project="p", image="i")
    other = long.model_copy(update={"name": "n" * 79 + "m"})
    assert len(job_id(long)) <= 48 and job_id(long).startswith("some-body-module-nnn")
    assert job_id(long) != job_id(other)
    for svc in job["TaskGroups"][0]["Services"]:
        assert len(svc["Name"]) <= 63
    with pytest.raises(ValueError, match="set by the builder"):
        NomadJobSpec(kind="module", name="x", owner="o", project="p", meta={"owner": "mallory"})


def test_gpu_constraint_only_with_model(fed) -> None:
    with_model = task(render("ide", fed), "main")["Resources"]["Devices"]
    assert with_model == [{"Name": "nvidia/gpu", "Count": 1, "Constraints": [
        {"LTarget": "${device.model}", "Operand": "=", "RTarget": "Tesla T4"}]}]
    without = task(render("module", fed), "main")["Resources"]["Devices"]
    assert without == [{"Name": "nvidia/gpu", "Count": 1}]
    assert "Devices" not in task(render("tool", fed), "main")["Resources"]


def test_cpu_cores_or_mhz(fed) -> None:
    assert task(render("module", fed), "main")["Resources"] | {"Devices": None} == {"Cores": 4, "MemoryMB": 8000, "Devices": None}
    assert task(render("training", fed), "main")["Resources"]["CPU"] == 4000
    with pytest.raises(ValueError, match="not both"):
        render("module", fed, cpu_mhz=1000)


def test_federation_constraints(fed) -> None:
    ai4eosc = render("module", fed)  # may use ifca only (psnc is kept by imagine)
    assert ai4eosc["Datacenters"] == ["ifca"]
    assert ai4eosc["NodePool"] == "all"
    assert {"LTarget": "${node.datacenter}", "Operand": "regexp", "RTarget": "^(ifca)$"} in ai4eosc["Constraints"]
    assert {"LTarget": "${node.pool}", "Operand": "regexp", "RTarget": "^(default|gpu)$"} in ai4eosc["Constraints"]
    imagine = render("training", fed)  # its own psnc plus the shared ifca
    assert imagine["Datacenters"] == ["ifca", "psnc"]
    assert imagine["Affinities"] == [{"LTarget": "${node.datacenter}", "Operand": "=", "RTarget": "psnc", "Weight": 50}]
    assert render("tool", fed)["NodePool"] == "default"
    with pytest.raises(ValueError, match="may not use datacenter"):
        render("module", fed, datacenters=["psnc"])
    with pytest.raises(ValueError, match="may not use node pool 'imagine'"):
        render("module", fed, node_pool="imagine")
    with pytest.raises(ValueError, match="preferred datacenter"):
        render("module", fed, preferred_datacenters=["psnc"])


def test_storage_sidecar_only_with_storage(fed) -> None:
    job = render("module", fed)
    side = task(job, "storage_mount")
    assert side["Lifecycle"] == {"Hook": "prestart", "Sidecar": True}
    assert side["Config"]["privileged"] is True
    assert side["Env"]["RCLONE_CONFIG_RSHARE_TYPE"] == "webdav"
    assert side["Env"]["RCLONE_CONFIG_RSHARE_USER"] == "alice"
    host = f"/nomad-storage/{job['ID']}"
    assert side["Config"]["volumes"] == [f"{host}:/storage:shared"]
    assert task(job, "main")["Config"]["volumes"] == [f"{host}:/storage:shared"]
    s3 = task(render("training", fed), "storage_mount")["Env"]
    assert s3["RCLONE_CONFIG_RSHARE_TYPE"] == "s3" and s3["REMOTE_PATH"] == "rshare:alice-bucket/data"
    bare = render("tool", fed)
    assert [t["Name"] for t in bare["TaskGroups"][0]["Tasks"]] == ["main"]
    assert "volumes" not in task(bare, "main")["Config"]


def test_kinds_ports_and_checks(fed) -> None:
    module = render("module", fed)
    group = module["TaskGroups"][0]
    assert group["Networks"][0]["DynamicPorts"] == [{"Label": "api", "To": 5000}, {"Label": "ui", "To": 80}]
    api = group["Services"][0]
    assert api["PortLabel"] == "api" and api["Checks"][0]["Path"] == "/v2/models/" and api["Checks"][0]["Type"] == "http"
    ide = render("ide", fed)
    main = task(ide, "main")
    assert main["Config"]["command"] == "jupyterhub-singleuser"
    assert main["Env"]["JUPYTERHUB_API_TOKEN"] == "tok" and main["Env"]["JUPYTERHUB_DEFAULT_URL"] == "/vscode/"
    assert ide["TaskGroups"][0]["Services"][0]["Checks"][0]["Path"] == "/user/alice/api"
    tool = render("tool", fed)
    assert task(tool, "main")["Config"]["args"] == ["--insecure"]
    assert [s["Checks"][0]["Type"] for s in tool["TaskGroups"][0]["Services"]] == ["tcp"]
    assert "Services" not in render("training", fed)["TaskGroups"][0]


def test_same_substance_as_ai4papi_module_template(fed) -> None:
    """Ports, GPU device + model constraint, storage sidecar, owner meta as in ai4-papi's nomad.hcl."""
    hcl = (nomad_spec.shared_dir() / "data" / "ai4-papi-reference" / "modules" / "nomad.hcl").read_text()
    assert 'port "api"' in hcl and "to = 5000" in hcl and 'task "storage_mount"' in hcl
    assert 'attribute = "${device.model}"' in hcl and 'owner       = "${OWNER}"' in hcl
    job = render("module", fed, gpu_model="Tesla T4")
    assert {"Label": "api", "To": 5000} in job["TaskGroups"][0]["Networks"][0]["DynamicPorts"]
    dev = task(job, "main")["Resources"]["Devices"][0]
    assert dev["Name"].endswith("gpu") and dev["Constraints"][0]["LTarget"] == "${device.model}"
    assert task(job, "storage_mount")["Lifecycle"] == {"Hook": "prestart", "Sidecar": True}
    assert "owner" in job["Meta"]


@pytest.mark.parametrize(("override", "message"), [
    ({"cpu_cores": -1}, "greater than 0"),
    ({"memory_mb": 0}, "greater than 0"),
    ({"kind": "database"}, "'ide', 'module', 'training' or 'tool'"),
    ({"gpu_count": 2}, "project 'ai4eosc' allows at most 1"),
    ({"image": None}, "needs an image"),
    ({"gpu_model": "Tesla T4", "gpu_count": 0}, "gpu_count 0"),
    ({"unknown_field": 1}, "Extra inputs are not permitted"),
])
def test_invalid_inputs(fed, override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render("module", fed, **override)


def test_gpu_model_not_offered(fed) -> None:
    with pytest.raises(ValueError, match="not offered to project 'imagine'"):
        render("training", fed, gpu_model="Tesla T4")
    with pytest.raises(ValueError, match="allows at most 0"):
        render_job({**SPECS["module"], "project": "outsiders", "gpu_count": 1},
                   federation=fed.model_copy(update={"datacenters": [fed.datacenters[0]]}))


def test_tool_needs_ports_and_known_tool(fed) -> None:
    with pytest.raises(ValueError, match="unknown tool 'cvat'"):
        render("tool", fed, tool="cvat")
    with pytest.raises(ValueError, match="at least one port"):
        render("tool", fed, tool=None, image="img")


def test_defaults_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="defaults file not found"):
        load_defaults(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("service_provider: nomad\nide: {}\nmodule: {ui_image: x}\nstorage: {image: y}\n"
                   "restart: {service: {attempts: 1, interval: 1q, delay: 1s}}\nreschedule: {}\ntypo: 1\n")
    with pytest.raises(ValueError) as e:
        load_defaults(bad)
    text = str(e.value)
    assert str(bad) in text and "typo" in text and "not a duration: '1q'" in text and "batch" in text
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_defaults(tmp_path / "list.yaml")


# -- CVAT: one job with server, database, cache and UI -------------------------------------

CVAT_SPEC = {"kind": "tool", "name": "annotate", "owner": "alice@example.org", "project": "ai4eosc",
             "cpu_cores": 2, "memory_mb": 2048, "storage": STORAGE}


def test_cvat_snapshot_and_spec(fed) -> None:
    from ai4lab.nomad.cvat import render_cvat_job

    job = render_cvat_job(NomadJobSpec(**CVAT_SPEC), "per-deployment-secret", federation=fed)
    assert nomad_spec.errors("Job", job) == []
    path = SNAPSHOTS / "cvat.json"
    text = json.dumps(job, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert json.loads(path.read_text()) == job, "rendered CVAT job differs from its snapshot (UPDATE_SNAPSHOTS=1)"
    group = job["TaskGroups"][0]
    assert [t["Name"] for t in group["Tasks"]] == ["storage_mount", "db", "cache", "main", "ui"]
    assert group["Networks"][0]["Mode"] == "bridge"  # the tasks reach each other on 127.0.0.1
    assert task(job, "main")["Env"]["DJANGO_SUPERUSER_PASSWORD"] == "per-deployment-secret"
    host = "/nomad-storage/alice-example-org-tool-annotate/cvat"
    assert task(job, "db")["Config"]["volumes"] == [f"{host}/db:/var/lib/postgresql/data:shared"]
    assert f"{host}/data:/home/django/data:shared" in task(job, "main")["Config"]["volumes"]
    assert task(job, "storage_mount")["Config"]["volumes"] == ["/nomad-storage/alice-example-org-tool-annotate:/storage:shared"]
    assert job["Meta"]["owner"] == "alice@example.org" and job["Meta"]["tool"] == "cvat"
    assert task(job, "main")["Resources"]["MemoryMB"] == 4096  # CVAT's minimum wins over the spec's 2048


@pytest.mark.parametrize(("change", "password", "message"), [
    ({"storage": None}, "per-deployment-secret", "keeps its database and data in the owner's storage"),
    ({}, "short", "at least 12 characters"),
    ({"kind": "module", "image": "x"}, "per-deployment-secret", "CVAT is a tool deployment"),
])
def test_cvat_refusals(fed, change, password, message) -> None:
    from ai4lab.nomad.cvat import render_cvat_job

    with pytest.raises(ValueError, match=message):
        render_cvat_job(NomadJobSpec(**(CVAT_SPEC | change)), password, federation=fed)
