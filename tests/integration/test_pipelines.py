"""Pipelines of two real DEEPaaS deployments: image-prep -> digits classifies a big digit image."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.integration.test_module_deployments import wait_status
from tests.oscar.helpers import big_digits
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"


@pytest.fixture(scope="module")
def pia(platform: Platform) -> httpx.Client:
    return platform.new_user_api("pia", "intermediate")


@pytest.fixture(scope="module")
def quinn(platform: Platform) -> httpx.Client:
    return platform.new_user_api("quinn", "intermediate")


def module(api: httpx.Client, item: str) -> dict:
    r = api.post(f"{API}/deployments", json={"kind": "module", "item": item, "hardware": {"cpu_num": 1}})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def steps(pia: httpx.Client) -> tuple[dict, dict]:
    prep, digits = module(pia, "ai4lab-image-prep"), module(pia, "ai4lab-digits")
    return wait_status(pia, prep["id"], "running"), wait_status(pia, digits["id"], "running")


def test_local_pipeline_classifies_big_images(pia: httpx.Client, steps: tuple[dict, dict], tmp_path: Path) -> None:
    prep, digits = steps
    r = pia.post(f"{API}/deployments", json={"kind": "pipeline", "title": "prep + digits", "steps": [
        {"deployment": prep["id"], "output": "file", "accept": "image/png"},
        {"deployment": digits["id"], "input_field": "image"}]})
    assert r.status_code == 201, r.text
    pipe = r.json()
    assert pipe["status"] == "running" and pipe["spec"]["steps"][0]["input_field"] == "image"
    hits = 0
    images = big_digits(tmp_path, n=4)
    for path, label in images:
        r = pia.post(f"{API}/deployments/{pipe['id']}/predict", files={"file": (path.name, path.read_bytes())})
        assert r.status_code == 200, r.text
        out = r.json()
        hits += out["predictions"]["label"] == label
        assert [s["item"] for s in out["steps"]] == ["ai4lab-image-prep", "ai4lab-digits"]
        assert out["steps"][0]["output"]["content_type"] == "image/png"
    assert hits >= 3
    bad = pia.post(f"{API}/deployments/{pipe['id']}/predict", files={"file": ("notes.txt", b"not an image")})
    assert bad.status_code == 400
    assert bad.json()["detail"].startswith("step 1 (ai4lab-image-prep): ") and "cannot read" in bad.json()["detail"]
    assert pia.delete(f"{API}/deployments/{pipe['id']}").json()["status"] == "stopped"


def test_pipeline_checks_its_steps(pia: httpx.Client, quinn: httpx.Client, steps: tuple[dict, dict]) -> None:
    prep, digits = steps

    def create(api: httpx.Client, steps: list[dict]) -> httpx.Response:
        return api.post(f"{API}/deployments", json={"kind": "pipeline", "steps": steps})

    one = create(pia, [{"deployment": prep["id"]}])
    assert one.status_code == 422 and one.json()["detail"][0]["loc"] == ["body", "steps"]
    assert "at least 2 items" in one.json()["detail"][0]["msg"]
    json_into_file = create(pia, [{"deployment": prep["id"]}, {"deployment": digits["id"], "input_field": "image"}])
    assert json_into_file.status_code == 400 and "passes JSON" in json_into_file.json()["detail"]
    no_arg = create(pia, [{"deployment": prep["id"], "output": "file"},
                          {"deployment": digits["id"], "input_field": "picture"}])
    assert no_arg.status_code == 400 and "no argument 'picture'" in no_arg.json()["detail"]
    file_from_json_only = create(pia, [{"deployment": digits["id"], "output": "file"},
                                       {"deployment": prep["id"]}])
    assert file_from_json_only.status_code == 400 and "JSON only" in file_from_json_only.json()["detail"]
    # another user's deployment as a step: 404, as if it did not exist
    theirs = create(quinn, [{"deployment": prep["id"], "output": "file"}, {"deployment": digits["id"]}])
    assert theirs.status_code == 404 and prep["id"] in theirs.json()["detail"]


def test_pipeline_from_the_cli(platform: Platform, pia: httpx.Client, steps: tuple[dict, dict],
                               tmp_path: Path) -> None:
    from tests.integration.test_module_cli import ai4lab

    env = {**platform.env, "AI4LAB_API_URL": f"{platform.url}/services/ai4lab",
           "AI4LAB_API_TOKEN": pia.headers["Authorization"].removeprefix("token ")}
    prep, digits = steps
    bad = ai4lab(env, "pipeline", "create", f"{prep['id']}:jpeg", digits["id"])
    assert bad.returncode == 2 and "json or file" in bad.stderr + bad.stdout
    r = ai4lab(env, "pipeline", "create", f"{prep['id']}:file", f"{digits['id']}:json:image", "--title", "cli")
    assert r.returncode == 0, r.stderr
    pipe_id = r.stdout.split()[0]
    (path, label), = big_digits(tmp_path, n=1)
    r = ai4lab(env, "pipeline", "run", pipe_id, str(path))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"]["label"] == label
    r = ai4lab(env, "predict", pipe_id, "--file", str(path))  # the generic predict knows pipelines too
    assert r.returncode == 0 and json.loads(r.stdout)["predictions"]["label"] == label
