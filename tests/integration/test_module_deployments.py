"""Inference deployments of the bundled modules through the running platform."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import psutil
import pytest

from ai4lab.core.envs import ensure_env
from ai4lab.core.settings import bundled_catalog_path
from tests.modules.helpers import held_out_digits
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"


@pytest.fixture(scope="module")
def owner(platform: Platform) -> httpx.Client:
    platform.add_user("mona", "mona-password", role="intermediate")
    return platform.api(platform.token("mona"))


@pytest.fixture(scope="module")
def stranger(platform: Platform) -> httpx.Client:
    platform.add_user("sam", "sam-password", role="advanced")
    return platform.api(platform.token("sam"))


def wait_status(api: httpx.Client, dep_id: str, wanted: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = api.get(f"{API}/deployments/{dep_id}").json()
        if dep["status"] == wanted:
            return dep
        if dep["status"] in ("failed", "stopped") and wanted != dep["status"]:
            raise AssertionError(f"deployment ended {dep['status']}: {dep['status_reason']}")
        time.sleep(0.5)
    raise TimeoutError(f"deployment {dep_id} not {wanted}: {dep}")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    """30 PNGs of digits the pretrained model never saw, written by the module's own data helper."""
    env = ensure_env(bundled_catalog_path() / "modules" / "ai4lab-digits")
    return held_out_digits(env, tmp_path_factory.mktemp("held-out"))


@pytest.fixture(scope="module")
def digits(owner: httpx.Client) -> dict:
    r = owner.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-digits", "title": "my digits",
                                              "hardware": {"cpu_num": 1, "ram": 2000}})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "starting"
    return wait_status(owner, r.json()["id"], "running")


def test_digits_predictions_through_the_platform(
    owner: httpx.Client, digits: dict, held_out: list[tuple[Path, int]]
) -> None:
    hits = 0
    for path, label in held_out:
        r = owner.post(f"{API}/deployments/{digits['id']}/predict",
                       files={"image": (path.name, path.read_bytes(), "image/png")})
        assert r.status_code == 200, r.text
        hits += r.json()["predictions"]["label"] == label
    assert hits / len(held_out) > 0.9


def test_swagger_ui_and_api_for_the_owner_only(
    platform: Platform, owner: httpx.Client, stranger: httpx.Client, digits: dict
) -> None:
    api = f"{API}/deployments/{digits['id']}/api"
    assert owner.get(f"{api}/v2/models/").json()["models"][0]["id"] == "ai4lab-digits"
    swagger = owner.get(f"{api}/swagger.json")
    assert swagger.status_code == 200 and "/v2/models/ai4lab-digits/predict/" in json.dumps(swagger.json())
    ui = owner.get(f"{api}/ui", follow_redirects=True)
    assert ui.status_code == 200 and "swagger" in ui.text.lower()
    assert digits["endpoints"]["ui"].endswith(f"{api}/ui")
    # another user: not found; nobody: not authenticated
    assert stranger.get(f"{api}/v2/models/").status_code == 404
    assert stranger.post(f"{API}/deployments/{digits['id']}/predict",
                         files={"image": ("x.png", b"x", "image/png")}).status_code == 404
    assert stranger.delete(f"{API}/deployments/{digits['id']}").status_code == 404
    assert httpx.get(f"{platform.url}{api}/v2/models/").status_code == 401


def test_bad_predictions_keep_the_deployment_running(
    platform: Platform, owner: httpx.Client, digits: dict
) -> None:
    url = f"{API}/deployments/{digits['id']}/predict"
    r = owner.post(url, files={"picture": ("x.png", b"x", "image/png")})
    assert r.status_code in (400, 422), r.text
    r = owner.post(url, files={"image": ("notes.txt", b"this is not an image", "text/plain")})
    assert r.status_code == 400 and "image" in r.text.lower()
    big = b"\0" * (21 * 2**20)
    r = owner.post(url, files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert owner.get(f"{API}/deployments/{digits['id']}").json()["status"] == "running"
    assert "/v2/models" in owner.get(f"{API}/deployments/{digits['id']}/logs").text


def test_diabetes_deployment_json_predictions_then_stop(owner: httpx.Client) -> None:
    r = owner.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-diabetes"})
    assert r.status_code == 201, r.text
    dep = wait_status(owner, r.json()["id"], "running")
    rows = [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]  # load_diabetes(scaled=False), row 0 (target 151)
    r = owner.post(f"{API}/deployments/{dep['id']}/predict", json={"rows": json.dumps(rows)})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 1 and 25 <= float(predictions[0]) <= 346  # the target's range in the dataset
    r = owner.delete(f"{API}/deployments/{dep['id']}")
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    assert owner.post(f"{API}/deployments/{dep['id']}/predict", json={"rows": "[]"}).status_code == 409


def server_processes(dep_id: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and f"deployments/{dep_id}/api" in " ".join(p.info["cmdline"])]


def test_diabetes_csv_upload_then_stop_and_process_gone(owner: httpx.Client, tmp_path: Path) -> None:
    r = owner.post(f"{API}/deployments", json={"kind": "module", "item": "ai4lab-diabetes", "title": "csv"})
    dep = wait_status(owner, r.json()["id"], "running")
    csv = "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n59,2,32.1,101,157,93.2,38,4,4.8598,87\n48,1,21.6,87,183,103.2,70,3,3.8918,69\n"
    r = owner.post(f"{API}/deployments/{dep['id']}/predict", files={"file": ("patients.csv", csv.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    predictions = [float(v) for v in r.json()["predictions"]]
    assert len(predictions) == 2 and all(25 <= v <= 346 for v in predictions)
    assert predictions[0] > predictions[1]  # row 0 (target 151) is sicker than row 1 (target 75)
    procs = server_processes(dep["id"])
    assert procs, "the DEEPaaS server process is visible"
    owner.delete(f"{API}/deployments/{dep['id']}")
    _, alive = psutil.wait_procs(procs, timeout=15)
    assert alive == []


def test_bad_deployment_requests(owner: httpx.Client) -> None:
    post = lambda **b: owner.post(f"{API}/deployments", json={"kind": "module", **b})  # noqa: E731
    r = post()
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "item"]
    assert post(item="nope").status_code == 404
    r = post(item="ai4lab-digits", hardware={"cpu_num": 99})
    assert r.status_code == 400 and "cpu_num=99 is outside" in r.json()["detail"]
    r = post(item="ai4lab-digits", hardware={"warp": 9})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "hardware", "warp"]
    assert r.json()["detail"][0]["msg"].startswith("unknown field 'warp' for hardware: use cpu_num,")
    r = post(item="ai4os-demo-app")  # a remote catalog item: image only
    assert r.status_code == 400 and "no local package" in r.json()["detail"]
    r = post(item="ai4lab-digits", weights="../x.joblib")
    assert r.status_code == 400


def test_try_me(owner: httpx.Client, held_out: list[tuple[Path, int]]) -> None:
    path, label = held_out[0]
    r = owner.post(f"{API}/catalog/modules/ai4lab-digits/try", files={"image": (path.name, path.read_bytes())})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"]["label"] == label
    r = owner.post(f"{API}/catalog/modules/ai4lab-digits/try", files={"image": ("a.txt", b"not an image")})
    assert r.status_code == 400
    r = owner.post(f"{API}/catalog/modules/ai4lab-digits/try", files={"photo": ("a.png", b"x")})
    assert r.status_code == 400 and "unknown field" in r.json()["detail"]
    assert owner.post(f"{API}/catalog/modules/nope/try", files={"image": ("a.png", b"x")}).status_code == 404


def test_stop_digits_and_process_gone(owner: httpx.Client, digits: dict) -> None:
    procs = server_processes(digits["id"])
    assert procs
    assert owner.delete(f"{API}/deployments/{digits['id']}").json()["status"] == "stopped"
    _, alive = psutil.wait_procs(procs, timeout=15)
    assert alive == []
    r = owner.post(f"{API}/deployments/{digits['id']}/predict", files={"image": ("x.png", b"x", "image/png")})
    assert r.status_code == 409 and "stopped" in r.json()["detail"]
