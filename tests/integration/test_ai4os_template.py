"""A module straight from the official AI4OS template runs unchanged: publish, deploy, predict, train, *Try*.

The module is generated in the test with cookiecutter from ``../shared/data/ai4-template``
(untouched), then filled in as its author would: metadata tags, a ``predict`` and a
``train`` of its own that read ``ai4-metadata.yml``, ``data/`` and ``models/``
relative to the repository, and ``mlflow-skinny`` in its ``requirements.txt``. Its
metadata recommends a GPU, which a basic user may not have (and module deployments get
none on the local backend): it runs on CPU, warned.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.test_trainings import wait_status
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"
TEMPLATE = Path(__file__).resolve().parents[3] / "shared" / "data" / "ai4-template"
ITEM = "tiny-demo-tpl"
GPU_WARNING = "this module recommends 1 GPU; it will run on CPU and may be slow"

# what the author writes into the generated api.py (appended: the template's own code stays as generated)
API_CODE = '''

# --- filled in by the module's author ------------------------------------------------
import json
import os

from webargs import fields, validate

WARMED = []


def warm():
    WARMED.append(True)


def get_predict_args():
    return {
        "x": fields.Float(required=True, metadata={"description": "a number"}),
    }


@_catch_error
def predict(**kwargs):
    model = BASE_DIR / "models" / "model.json"
    offset = json.loads(model.read_text())["mean"] if model.exists() else 0.0
    return {"y": kwargs["x"] * 2 + offset, "title": config.AI4_METADATA["title"], "warmed": bool(WARMED),
            "cwd": os.getcwd(), "base": str(BASE_DIR)}


def get_train_args():
    return {
        "epochs": fields.Int(load_default=2, validate=validate.Range(min=1, max=5),
                             metadata={"description": "passes over data/"}),
    }


def train(**kwargs):
    import mlflow

    values = [float(v) for f in sorted((BASE_DIR / "data").rglob("*.txt")) for v in f.read_text().split()]
    mean = sum(values) / len(values)
    with mlflow.start_run():
        for epoch in range(kwargs["epochs"]):
            mlflow.log_metric("loss", abs(mean) / (epoch + 1), step=epoch)
    out = BASE_DIR / "models" / "model.json"
    out.write_text(json.dumps({"mean": mean}))
    return {"mean": mean, "files": len(values)}
'''


def generate_module(where: Path) -> Path:
    """The template, generated with cookiecutter as its README says, then filled in by its author."""
    from cookiecutter.main import cookiecutter

    repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(where), extra_context={
        "project_name": "Tiny demo", "author_name": "Ada Lovelace", "author_email": "ada@example.org",
        "description": "A tiny module from the AI4OS template"}))
    for path in [repo, *repo.rglob("*")]:  # the template's files are read-only
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    meta = yaml.safe_load((repo / "ai4-metadata.yml").read_text())
    meta.update({"tags": ["test"], "tasks": ["Regression"], "categories": ["AI4 trainable"], "libraries": ["Other"],
                 "resources": {"inference": {"cpu": 1, "gpu": 1, "memory_MB": 1000}}})
    (repo / "ai4-metadata.yml").write_text(yaml.safe_dump(meta, sort_keys=False))
    api = repo / "tiny_demo" / "api.py"
    api.write_text(api.read_text() + API_CODE)
    (repo / "requirements.txt").write_text((repo / "requirements.txt").read_text() + "mlflow-skinny\n")
    return repo


def upload(api: httpx.Client, folder: Path, target: str) -> None:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and ".git" not in rel.parts:
            r = api.put(f"{API}/storage/{target}/{rel.as_posix()}", content=path.read_bytes())
            assert r.status_code == 200, (rel, r.text)


@pytest.fixture(scope="module")
def author(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An intermediate user who published the generated module from their storage."""
    platform.add_user("tpl-author", "tpl-author-password", role="intermediate")
    api = platform.api(platform.token("tpl-author"))
    repo = generate_module(tmp_path_factory.mktemp("tpl"))
    upload(api, repo, "code/tiny-demo")
    r = api.post(f"{API}/catalog/modules", json={"id": ITEM, "metadata_yaml": (repo / "ai4-metadata.yml").read_text(),
                                                  "package_path": "code/tiny-demo"})
    assert r.status_code == 201, r.text
    assert r.json()["run"]["entry_point"] == "tiny_demo"
    admin = platform.api(platform.token("admin"))
    assert admin.post(f"{API}/catalog/modules/{ITEM}/promote").status_code == 200
    platform.add_user("tpl-basic", "tpl-basic-password", role="basic")
    return {"api": api, "repo": repo, "basic": platform.api(platform.token("tpl-basic"))}


def prediction(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    return body.get("predictions", body)


def test_the_form_warns_about_the_gpu_and_still_deploys(author: dict[str, Any]) -> None:
    basic = author["basic"]  # the basic role may not use the platform's GPUs
    config = basic.get(f"{API}/catalog/modules/{ITEM}/config").json()
    assert config["deployable"] is True and config["problems"] == []
    assert config["warnings"] == [f"{GPU_WARNING} (the basic role may not use GPUs)"]
    assert config["hardware"]["gpu_num"]["range"] == [0, 0]
    page = basic.get(f"{API}/marketplace/modules/{ITEM}")
    assert page.status_code == 200 and 'id="deploy-warnings"' in page.text and GPU_WARNING in page.text


def test_deploy_and_predict_from_the_repository(author: dict[str, Any]) -> None:
    api = author["basic"]
    r = api.post(f"{API}/deployments", json={"kind": "module", "item": ITEM})
    assert r.status_code == 201, r.text
    dep = r.json()
    assert any(GPU_WARNING in w for w in dep["warnings"]), dep
    try:
        dep = wait_status(api, dep["id"], ("running", "failed"), timeout=300)
        assert dep["status"] == "running", (dep, api.get(f"{API}/deployments/{dep['id']}/logs").text[-3000:])
        assert any(GPU_WARNING in w for w in api.get(f"{API}/deployments/{dep['id']}").json()["warnings"])
        out = prediction(api.post(f"{API}/deployments/{dep['id']}/predict", json={"x": 3}))
        assert out["y"] == 6.0 and out["title"] == "Tiny demo" and out["warmed"] is True
        # deepaas-run runs in the deployment's own copy of the repository, as in the module's image
        assert out["cwd"] == out["base"] and Path(out["base"]).name == "tiny-demo"
        assert f"deployments/{dep['id']}/" in out["base"]
        bad = api.post(f"{API}/deployments/{dep['id']}/predict", json={"x": "not a number"})
        assert bad.status_code in (400, 422), bad.text
    finally:
        api.delete(f"{API}/deployments/{dep['id']}")


def test_try_runs_the_module_once(author: dict[str, Any]) -> None:
    out = prediction(author["api"].post(f"{API}/catalog/modules/{ITEM}/try", data={"x": "1.5"}))
    assert out["y"] == 3.0 and out["title"] == "Tiny demo"
    r = author["api"].post(f"{API}/catalog/modules/{ITEM}/try", data={"y": "1"})
    assert r.status_code == 400 and "unknown field" in r.json()["detail"]


def test_train_on_data_into_models_with_mlflow_metrics(author: dict[str, Any], platform: Platform) -> None:
    api = author["api"]
    for name, text in (("a.txt", "1 2 3"), ("more/b.txt", "4 5 6")):
        assert api.put(f"{API}/storage/datasets/numbers/{name}", content=text.encode()).status_code == 200
    args = api.get(f"{API}/catalog/modules/{ITEM}/train-args").json()
    assert args["epochs"]["range"] == [1, 5] and args["epochs"]["default"] == 2
    r = api.post(f"{API}/deployments", json={"kind": "training", "item": ITEM, "dataset": "datasets/numbers",
                                            "args": {"epochs": 3}})
    assert r.status_code == 201, r.text
    dep = wait_status(api, r.json()["id"], ("succeeded", "failed"), timeout=300)
    assert dep["status"] == "succeeded", (dep, api.get(f"{API}/deployments/{dep['id']}/logs").text[-3000:])
    assert dep["endpoints"]["result"] == {"mean": 3.5, "files": 6}
    # what the module saved in models/ is in the user's storage
    saved = api.get(f"{API}/storage/models/{ITEM}/{dep['id']}/model.json")
    assert saved.status_code == 200 and saved.json() == {"mean": 3.5}
    metrics = api.get(f"{API}/deployments/{dep['id']}/metrics").json()
    assert [p["step"] for p in metrics["metrics"]["loss"]] == [0, 1, 2]
    assert metrics["metrics"]["loss"][0]["value"] == pytest.approx(3.5)
    bad = api.post(f"{API}/deployments", json={"kind": "training", "item": ITEM, "dataset": "datasets/numbers",
                                              "args": {"epochs": 50}})
    assert bad.status_code == 400 and "epochs" in bad.json()["detail"]


def test_the_environment_is_built_the_ai4os_way(author: dict[str, Any], platform: Platform) -> None:
    """requirements.txt first, then an editable install of the repository, as the template's Dockerfile does."""
    import json

    from ai4lab.runtime import default_runtime_dir

    envs = default_runtime_dir() / "envs"  # the platform's default (its settings come from the harness only)
    markers = [json.loads(p.read_text()) for p in envs.glob(f"{ITEM}-*/ai4lab-env.json")]
    assert markers, f"no environment of {ITEM} in {envs}"
    marker = markers[0]
    assert marker["editable"] is True and marker["repo"] == "srv/tiny-demo"
    names = {p.split("==")[0] for p in marker["packages"]}
    assert {"tiny-demo", "deepaas", "webargs", "mlflow-skinny"} <= names
    assert any(p == "webargs==5.5.3" for p in marker["packages"])  # the template's own pin
