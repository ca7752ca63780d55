"""A module straight from the official AI4OS template runs unchanged: publish, deploy, predict, train, *Try*.

The module is generated in the test with cookiecutter from ``../shared/data/ai4-template``
(untouched), then filled in as its author would: metadata tags, a ``predict`` and a
``train`` of its own that read ``ai4-metadata.yml``, ``data/`` and ``models/``
relative to the repository, and ``mlflow-skinny`` in its ``requirements.txt``. Its
metadata recommends a GPU, which a basic user may not have (and module deployments get
none on the local backend): it runs on CPU, warned.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.test_browser import browser, login  # noqa: F401 - the Chromium fixture
from tests.integration.test_trainings import wait_status
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform-browser")]
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
    from ai4lab.core.runtime import default_runtime_dir

    envs = default_runtime_dir() / "envs"  # the platform's default (its settings come from the harness only)
    markers = [json.loads(p.read_text()) for p in envs.glob(f"{ITEM}-*/ai4lab-env.json")]
    assert markers, f"no environment of {ITEM} in {envs}"
    marker = markers[0]
    assert marker["editable"] is True and marker["repo"] == "srv/tiny-demo"
    names = {p.split("==")[0] for p in marker["packages"]}
    assert {"tiny-demo", "deepaas", "webargs", "mlflow-skinny"} <= names
    assert any(p == "webargs==5.5.3" for p in marker["packages"])  # the template's own pin


def test_catalog_check_reports_each_step(author: dict[str, Any], platform: Platform,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    """`ai4lab catalog check`: a module that runs, and one that fails in warm(), with its log."""
    ok = platform.cli("catalog", "check", ITEM, "--json", check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    steps = {s["step"]: s["status"] for s in report["steps"]}
    assert report["ok"] is True and report["first_failure"] is None
    assert steps["environment builds"] == "ok" and steps["get_metadata"] == "ok" and steps["warm"] == "ok"
    assert steps["predict"] == "skipped"  # x has no default: the report says so instead of guessing
    # the same module, broken the way real ones break: warm() cannot find its weights
    broken = tmp_path_factory.mktemp("broken") / "tiny-demo"
    shutil.copytree(author["repo"], broken, ignore=shutil.ignore_patterns(".git"))
    api_py = broken / "tiny_demo" / "api.py"
    api_py.write_text(api_py.read_text().replace(
        "def warm():\n    WARMED.append(True)",
        "def warm():\n    raise FileNotFoundError('no weights in models/: download them first')"))
    api = author["api"]
    upload(api, broken, "code/tiny-broken")
    r = api.post(f"{API}/catalog/modules", json={"id": "tiny-broken-tpl", "package_path": "code/tiny-broken",
                                                  "metadata_yaml": (broken / "ai4-metadata.yml").read_text()})
    assert r.status_code == 201, r.text
    bad = platform.cli("catalog", "check", "tiny-broken-tpl", check=False)
    assert bad.returncode == 1
    assert "fails at 'warm'" in bad.stdout and "no weights in models/" in bad.stdout + bad.stderr
    # admins see the reports in the API and the admin view; users may not run checks
    admin = platform.api(platform.token("admin"))
    assert api.post(f"{API}/catalog/modules/{ITEM}/check").status_code == 403
    again = admin.post(f"{API}/catalog/modules/{ITEM}/check")
    assert again.status_code == 200 and again.json()["ok"] is True
    reports = {r["item"]: r for r in admin.get(f"{API}/catalog/checks").json()}
    assert reports["tiny-broken-tpl"]["first_failure"] == "warm" and reports[ITEM]["ok"] is True
    page = admin.get(f"{API}/admin")
    assert page.status_code == 200 and "fails at warm" in page.text


def git_repo(source: Path, name: str) -> Path:
    """A git repository of the module that every account can read (``file://`` clones run as the publisher)."""
    import subprocess

    root = Path(tempfile.mkdtemp(prefix="ai4lab-test-git-"))
    repo = root / name
    shutil.copytree(source, repo, ignore=shutil.ignore_patterns(".git"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org",
           "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.org"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "the module"]):
        subprocess.run(["git", *cmd], cwd=repo, env=env, check=True)
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o055 | (0o011 if path.is_dir() else 0))
    return repo


def test_a_module_straight_from_git(author: dict[str, Any], platform: Platform) -> None:
    """`ai4lab catalog add-source NAME --git URL` (and the admin API), and publishing from a git URL."""
    repo = git_repo(author["repo"], "tiny-demo-git")
    added = platform.cli("catalog", "add-source", "tpl-git", "--git", f"file://{repo}", check=False)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "added source tpl-git (module repository): 1 item(s): tiny-demo-git" in added.stdout
    assert "tpl-git" in platform.cli("catalog", "sources").stdout
    api = author["api"]
    out = prediction(api.post(f"{API}/catalog/modules/tiny-demo-git/try", data={"x": "2"}))
    assert out["y"] == 4.0 and out["title"] == "Tiny demo"
    again = platform.cli("catalog", "add-source", "tpl-git", "--git", f"file://{repo}", check=False)
    assert again.returncode != 0 and "exists already" in again.stderr
    nothing = platform.cli("catalog", "add-source", "nothing", "--git", "file:///nonexistent/repo", check=False)
    assert nothing.returncode != 0 and "cannot clone" in nothing.stderr
    admin = platform.api(platform.token("admin"))
    assert "tpl-git" in {s["name"] for s in admin.get(f"{API}/catalog/sources").json()}
    assert admin.delete(f"{API}/catalog/sources/tpl-git").json() == {"removed": "tpl-git"}
    assert api.get(f"{API}/catalog/modules/tiny-demo-git").status_code == 404
    # the same through the admin API
    r = admin.post(f"{API}/catalog/sources", json={"name": "tpl-git2", "git": f"file://{repo}"})
    assert r.status_code == 201 and r.json()["items"] == ["tiny-demo-git"] and r.json()["type"] == "repo", r.text
    assert admin.delete(f"{API}/catalog/sources/tpl-git2").status_code == 200
    # a user publishes from a git URL of their own: the metadata comes from the repository
    r = api.post(f"{API}/catalog/modules", json={"id": "tiny-from-git", "git_url": f"file://{repo}"})
    assert r.status_code == 201, r.text
    assert r.json()["lineage"]["git_url"] == f"file://{repo}" and len(r.json()["lineage"]["git_commit"]) == 40
    out = prediction(api.post(f"{API}/catalog/modules/tiny-from-git/try", data={"x": "5"}))
    assert out["y"] == 10.0
    bad = api.post(f"{API}/catalog/modules", json={"id": "tiny-bad-git", "git_url": "file:///root/nothing-here"})
    assert bad.status_code == 400 and "cannot clone" in bad.json()["detail"]


# --- the whole DEEPaaS contract: every kind of argument, and answers that are not JSON ----------------
KINDS_CODE = '''

# --- filled in by the module's author ------------------------------------------------
import io
import json
import zipfile

from webargs import fields, validate

ANSWERS = ["application/json", "image/png", "application/zip", "audio/wav"]


def get_predict_args():
    return {
        "text": fields.Str(load_default="hello"),
        "choice": fields.Str(load_default="b", enum=["a", "b"]),
        "mode": fields.Str(load_default="x", validate=validate.OneOf(["x", "y"])),
        "count": fields.Int(load_default=3, validate=validate.Range(min=1, max=10)),
        "ratio": fields.Float(load_default=0.5),
        "flag": fields.Bool(load_default=False),
        "opts": fields.Str(load_default='{"k": 1}'),
        "values": fields.List(fields.Float(), load_default=[1.0, 2.0]),
        "image": fields.Field(required=False, type="file", location="form", description="an image"),
        "sound": fields.Field(required=False, type="file", location="form", description="a sound"),
        "accept": fields.Str(validate=validate.OneOf(ANSWERS)),
    }


def _read(upload):
    with open(upload.filename, "rb") as f:
        return f.read()


def predict(**kwargs):
    accept = kwargs.get("accept") or "application/json"
    if accept == "image/png":
        return _read(kwargs["image"])
    if accept == "audio/wav":
        return io.BytesIO(_read(kwargs["sound"]))
    if accept == "application/zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("args.json", json.dumps({"text": kwargs["text"], "values": kwargs["values"]}))
            if kwargs.get("image") is not None:
                z.writestr(kwargs["image"].original_filename or "image", _read(kwargs["image"]))
        return buf.getvalue()
    out = {k: v for k, v in kwargs.items() if k not in ("image", "sound", "accept")}
    out["opts"] = json.loads(kwargs["opts"])
    for name in ("image", "sound"):
        if kwargs.get(name) is not None:
            out[name] = {"name": kwargs[name].original_filename, "size": len(_read(kwargs[name]))}
    return out


def get_train_args():
    return {
        "epochs": fields.Int(load_default=1, validate=validate.Range(min=1, max=3)),
        "optimizer": fields.Str(load_default="sgd", validate=validate.OneOf(["sgd", "adam"])),
        "shuffle": fields.Bool(load_default=True),
        "layers": fields.List(fields.Int(), load_default=[8, 4]),
    }


def train(**kwargs):
    return {"epochs": kwargs["epochs"], "optimizer": kwargs["optimizer"], "layers": len(kwargs["layers"])}
'''
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")  # a PNG's first bytes, then ours
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40))


@pytest.fixture(scope="module")
def kinds(author: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A module of the template whose predict takes every kind of argument and answers JSON, PNG, zip or WAV."""
    from cookiecutter.main import cookiecutter

    repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(tmp_path_factory.mktemp("kinds")),
                             extra_context={"project_name": "Kinds demo", "author_name": "Ada Lovelace",
                                            "author_email": "ada@example.org", "description": "every kind"}))
    for path in [repo, *repo.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    meta = yaml.safe_load((repo / "ai4-metadata.yml").read_text())
    meta.update({"tags": ["test"], "tasks": ["Other"], "categories": ["AI4 inference"], "libraries": ["Other"]})
    (repo / "ai4-metadata.yml").write_text(yaml.safe_dump(meta, sort_keys=False))
    api_py = repo / "kinds_demo" / "api.py"
    api_py.write_text(api_py.read_text() + KINDS_CODE)
    upload(author["api"], repo, "code/kinds-demo")
    r = author["api"].post(f"{API}/catalog/modules", json={"id": "kinds-demo-tpl", "package_path": "code/kinds-demo",
                                                           "metadata_yaml": (repo / "ai4-metadata.yml").read_text()})
    assert r.status_code == 201, r.text
    return "kinds-demo-tpl"


def check_answers(post: Any) -> None:
    """The same requests through one path (Try, or a deployment): JSON of every kind, then PNG, WAV and zip."""
    files = {"image": ("dot.png", PNG, "image/png"), "sound": ("beep.wav", WAV, "audio/wav")}
    form = {"text": "hi", "choice": "a", "mode": "y", "count": "7", "ratio": "0.25", "flag": "true",
            "opts": '{"k": 2}', "values": ["3.5", "4"]}  # a list: the field repeated, as DEEPaaS reads it
    out = prediction(post(data=form, files=files))
    assert out == {"text": "hi", "choice": "a", "mode": "y", "count": 7, "ratio": 0.25, "flag": True, "opts": {"k": 2},
                   "values": [3.5, 4.0], "image": {"name": "dot.png", "size": len(PNG)},
                   "sound": {"name": "beep.wav", "size": len(WAV)}}
    defaults = prediction(post(data={}, files={}))
    assert defaults["values"] == [1.0, 2.0] and defaults["count"] == 3 and defaults["flag"] is False
    assert post(data={"count": "11"}, files={}).status_code in (400, 422)
    assert post(data={"mode": "z"}, files={}).status_code in (400, 422)
    png = post(data={}, files={"image": files["image"]}, headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"].startswith("image/png") and png.content == PNG
    wav = post(data={}, files={"sound": files["sound"]}, headers={"Accept": "audio/wav"})
    assert wav.status_code == 200 and wav.headers["content-type"].startswith("audio/wav") and wav.content == WAV
    zipped = post(data={"text": "zz"}, files={"image": files["image"]}, headers={"Accept": "application/zip"})
    assert zipped.status_code == 200 and zipped.headers["content-type"].startswith("application/zip")
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as z:
        assert json.loads(z.read("args.json")) == {"text": "zz", "values": [1.0, 2.0]} and z.read("dot.png") == PNG


def test_every_argument_kind_and_answer_type_through_try(author: dict[str, Any], kinds: str) -> None:
    api = author["api"]
    check_answers(lambda data, files, headers=None: api.post(f"{API}/catalog/modules/{kinds}/try", data=data,
                                                            files=files or None, headers=headers))
    # what forms are made from: choices (also the demo app's enum=[...]), ranges, lists, files
    described = {a["name"]: a for a in api.get(f"{API}/marketplace/modules/{kinds}/predict-args").json()}
    assert described["choice"]["choices"] == ["a", "b"] and described["mode"]["choices"] == ["x", "y"]
    assert described["count"]["range"] == [1, 10] and described["values"]["many"] is True
    assert described["values"]["default"] == [1.0, 2.0] and described["image"]["file"] is True
    assert described["accept"]["choices"][:2] == ["application/json", "image/png"]
    train_args = api.get(f"{API}/catalog/modules/{kinds}/train-args").json()
    assert train_args["optimizer"]["choices"] == ["sgd", "adam"] and train_args["epochs"]["range"] == [1, 3]
    assert train_args["layers"]["type"] == "List" and train_args["shuffle"]["default"] is True


def test_every_argument_kind_and_answer_type_through_a_deployment(author: dict[str, Any], kinds: str) -> None:
    api = author["api"]
    dep = api.post(f"{API}/deployments", json={"kind": "module", "item": kinds}).json()
    try:
        dep = wait_status(api, dep["id"], ("running", "failed"), timeout=300)
        assert dep["status"] == "running", api.get(f"{API}/deployments/{dep['id']}/logs").text[-3000:]
        url = f"{API}/deployments/{dep['id']}/predict"
        check_answers(lambda data, files, headers=None: api.post(url, data=data, files=files or None, headers=headers))
        # JSON requests: lists, booleans, numbers and dicts as DEEPaaS wants them; accept as a field
        out = prediction(api.post(url, json={"values": [7, 8.5], "flag": True, "count": 2, "opts": {"k": 3}}))
        assert out["values"] == [7.0, 8.5] and out["flag"] is True and out["count"] == 2 and out["opts"] == {"k": 3}
        zipped = api.post(url, json={"accept": "application/zip", "text": "j"})
        assert zipped.headers["content-type"].startswith("application/zip")
        with zipfile.ZipFile(io.BytesIO(zipped.content)) as z:
            assert json.loads(z.read("args.json"))["text"] == "j"
        # the deployment's own API (what its Swagger UI calls: accept is a query parameter of this module's
        # spec) passes the bytes through too
        model = dep["endpoints"]["model"]
        raw = api.post(f"{API}/deployments/{dep['id']}/api/v2/models/{model}/predict/", params={"accept": "image/png"},
                       files={"image": ("dot.png", PNG, "image/png")}, headers={"Accept": "image/png"})
        assert raw.status_code == 200 and raw.content == PNG and raw.headers["content-type"].startswith("image/png")
    finally:
        api.delete(f"{API}/deployments/{dep['id']}")


def test_the_lab_panel_warns_and_takes_every_argument_kind(author: dict[str, Any], kinds: str, platform: Platform,
                                                           browser: Any) -> None:  # noqa: F811
    """In JupyterLab: the GPU warning in the deploy form, and the try box of the kinds module, by argument kind."""
    admin = platform.api(platform.token("admin"))
    assert admin.post(f"{API}/catalog/modules/{kinds}/promote").status_code == 200
    token = platform.token("tpl-basic")
    hub = platform.api(token)
    r = hub.post("/hub/api/users/tpl-basic/server", json={"profile": "small", "ide": "lab", "cpu": 1, "ram_gb": 2,
                                                         "gpu": 0})
    assert r.status_code in (201, 202), r.text
    platform.wait_server(token, "tpl-basic")
    try:
        page = login(browser, platform, "tpl-basic", "tpl-basic-password")
        page.goto(f"{platform.url}/user/tpl-basic/lab")
        page.wait_for_selector("li.lm-TabBar-tab[data-id='ai4lab-sidebar']", timeout=120_000)
        page.click("li.lm-TabBar-tab[data-id='ai4lab-sidebar']")
        page.click("#ai4lab-sidebar button[data-panel=deploy]")
        deploy = page.locator("#ai4lab-deploy")
        deploy.wait_for(state="visible")
        deploy.locator("#ai4lab-deploy-item").fill(ITEM)
        deploy.locator("#ai4lab-deploy-load").click()
        deploy.locator(".ai4lab-warning", has_text=GPU_WARNING).wait_for(timeout=120_000)
        # the kinds module's try box: one input per kind
        deploy.locator("#ai4lab-deploy-item").fill(kinds)
        deploy.locator("#ai4lab-deploy-load").click()
        deploy.locator("#ai4lab-try-accept").wait_for(timeout=300_000)
        assert deploy.locator("#ai4lab-try-choice").evaluate("e => e.tagName") == "SELECT"
        assert deploy.locator("#ai4lab-try-count").get_attribute("type") == "number"
        assert deploy.locator("#ai4lab-try-flag").get_attribute("type") == "checkbox"
        deploy.locator("#ai4lab-try-choice").select_option("a")
        deploy.locator("#ai4lab-try-count").fill("9")
        deploy.locator("#ai4lab-try-flag").check()
        deploy.locator("#ai4lab-try-values").fill("5, 6.5")
        deploy.locator("#ai4lab-try-opts").fill('{"k": 4}')
        deploy.locator("#ai4lab-try-button").click()
        deploy.locator("#ai4lab-try-json, #ai4lab-try .ai4lab-error").first.wait_for(timeout=120_000)
        assert deploy.locator("#ai4lab-try .ai4lab-error").count() == 0, deploy.locator("#ai4lab-try").inner_text()
        out = json.loads(deploy.locator("#ai4lab-try-json").inner_text())
        assert out["choice"] == "a" and out["count"] == 9 and out["flag"] is True
        assert out["values"] == [5.0, 6.5] and out["opts"] == {"k": 4}
        # a PNG answer: shown, and offered for download
        png = Path(tempfile.mkdtemp()) / "dot.png"
        png.write_bytes(PNG)
        deploy.locator("#ai4lab-try-image").set_input_files(str(png))
        deploy.locator("#ai4lab-try-accept").select_option("image/png")
        deploy.locator("#ai4lab-try-button").click()
        deploy.locator("#ai4lab-try-answer-image, #ai4lab-try .ai4lab-error").first.wait_for(timeout=120_000)
        assert deploy.locator("#ai4lab-try .ai4lab-error").count() == 0, deploy.locator("#ai4lab-try").inner_text()
        assert deploy.locator("#ai4lab-try-download").get_attribute("download") == "answer.png"
        assert f"image/png, {len(PNG)} bytes" in deploy.locator("#ai4lab-try-result").inner_text()
    finally:
        hub.delete("/hub/api/users/tpl-basic/server")
