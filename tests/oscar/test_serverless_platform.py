"""Serverless deployments (OSCAR services) and OSCAR pipelines through the real platform API.

The platform fixture points ``oscar_endpoint`` at the session's fake OSCAR, which
runs the generated script with the module's real ``deepaas-cli``.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.oscar.helpers import big_digits
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"


@pytest.fixture(scope="module")
def olga(platform: Platform) -> httpx.Client:
    return platform.new_user_api("olga", "basic")


@pytest.fixture(scope="module")
def other(platform: Platform) -> httpx.Client:
    return platform.new_user_api("otto", "basic")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    return big_digits(tmp_path_factory.mktemp("big"), n=3)


def serverless(api: httpx.Client, item: str) -> dict:
    r = api.post(f"{API}/deployments", json={"kind": "serverless", "item": item, "title": f"{item} on OSCAR"})
    assert r.status_code == 201, r.text
    return r.json()


def test_serverless_deployment_lifecycle(olga: httpx.Client, other: httpx.Client, fake_oscar,
                                         images: list[tuple[Path, int]]) -> None:
    dep = serverless(olga, "ai4lab-digits")
    assert dep["kind"] == "serverless" and dep["backend"] == "oscar" and dep["status"] == "running"
    name = dep["endpoints"]["oscar_service"]
    assert name.startswith("ai4lab-olga-") and name in fake_oscar.fake.services
    hits = 0
    for path, label in images:
        r = olga.post(f"{API}/deployments/{dep['id']}/predict", files={"image": (path.name, path.read_bytes())})
        assert r.status_code == 200, r.text
        hits += r.json()["predictions"]["label"] == label
    assert hits >= 2
    bad = olga.post(f"{API}/deployments/{dep['id']}/predict", files={"image": ("notes.txt", b"not an image")})
    assert bad.status_code == 400 and "cannot read" in bad.json()["detail"]
    assert "invocation OK" in olga.get(f"{API}/deployments/{dep['id']}/logs").text
    # someone else's: 404 everywhere
    assert other.get(f"{API}/deployments/{dep['id']}").status_code == 404
    assert other.post(f"{API}/deployments/{dep['id']}/predict", json={}).status_code == 404
    assert other.delete(f"{API}/deployments/{dep['id']}").status_code == 404
    gone = olga.delete(f"{API}/deployments/{dep['id']}")
    assert gone.status_code == 200 and gone.json()["status"] == "stopped"
    assert name not in fake_oscar.fake.services
    assert olga.post(f"{API}/deployments/{dep['id']}/predict", json={}).status_code == 409


def test_serverless_of_an_unknown_module_is_404(olga: httpx.Client) -> None:
    r = olga.post(f"{API}/deployments", json={"kind": "serverless", "item": "no-such-module"})
    assert r.status_code == 404


def test_pipeline_of_oscar_services(olga: httpx.Client, fake_oscar, images: list[tuple[Path, int]]) -> None:
    prep, digits = serverless(olga, "ai4lab-image-prep"), serverless(olga, "ai4lab-digits")
    r = olga.post(f"{API}/deployments", json={"kind": "pipeline", "title": "big digits on OSCAR", "steps": [
        {"deployment": prep["id"], "input_field": "image", "output": "file"},
        {"deployment": digits["id"], "input_field": "image"}]})
    assert r.status_code == 201, r.text
    pipe = r.json()
    path, label = images[0]
    r = olga.post(f"{API}/deployments/{pipe['id']}/predict", files={"file": (path.name, path.read_bytes())})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["predictions"]["label"] == label
    first = out["steps"][0]
    assert first["kind"] == "serverless" and first["output"]["content_type"] == "image/png"
    assert first["output"]["bytes"] < 1000 and all(s["seconds"] > 0 for s in out["steps"])
    for dep in (pipe, prep, digits):
        assert olga.delete(f"{API}/deployments/{dep['id']}").status_code == 200


def test_cli_serverless_with_json_arguments(platform: Platform, olga: httpx.Client) -> None:
    """A module without a file (JSON rows) on OSCAR, from the CLI: deploy --serverless, predict --arg, stop."""
    from tests.integration.test_module_cli import ai4lab

    env = {**platform.env, "AI4LAB_API_URL": f"{platform.url}/services/ai4lab",
           "AI4LAB_API_TOKEN": olga.headers["Authorization"].removeprefix("token ")}
    r = ai4lab(env, "deploy", "ai4lab-diabetes", "--serverless")
    assert r.returncode == 0, r.stderr
    dep_id, status = r.stdout.split()[:2]
    assert status == "running"
    rows = json.dumps([[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]])
    r = ai4lab(env, "predict", dep_id, "--arg", f"rows={rows}")
    assert r.returncode == 0, r.stderr
    predictions = json.loads(r.stdout)["predictions"]
    assert len(predictions) == 1 and 25 <= float(predictions[0]) <= 346
    r = ai4lab(env, "predict", dep_id, "--arg", "rows=[[1, 2]]")
    assert r.returncode == 1 and "10" in r.stderr + r.stdout  # the module's reason: rows of 10 numbers
    assert ai4lab(env, "stop", dep_id).returncode == 0
