"""The OSCAR backend and service definitions against the spec-validating fake (which really runs the script)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ai4lab.core.errors import PlatformError
from ai4lab.backends.oscar import OscarBackend, OscarConfig, OscarError
from ai4lab.catalog.metadata import load_folder
from ai4lab.deploy.lifecycle import Platform
from ai4lab.deploy.serverless import OscarServices
from ai4lab.oscar import build_service, decode_output, encode_request, service_name
from ai4lab.core.settings import Settings, bundled_catalog_path
from tests.fakes import oscar_spec
from tests.fakes.oscar import FakeOscar, FakeOscarServer, bundled_images
from tests.oscar.helpers import big_digits

DIGITS = bundled_catalog_path() / "modules" / "ai4lab-digits"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOscarServer]:
    with FakeOscarServer(FakeOscar(images=bundled_images(), oidc_token="oidc-access-token")) as srv:
        yield srv


@pytest.fixture(scope="module")
def digits_service() -> dict:
    item = load_folder(DIGITS, kind="module", source="bundled")
    return build_service(item, service_name("Ana María@lab", "0a1b2c3d4e5f"), cluster_id="c1", owner="Ana María@lab",
                         dep_id="0a1b2c3d4e5f", file_arg="image", vo="vo.example.eu")


def test_service_definition_follows_the_spec(digits_service: dict) -> None:
    assert oscar_spec.errors("Service", digits_service) == []
    assert digits_service["name"] == "ai4lab-ana-mar-a-lab-0a1b2c3d4e5f"
    assert digits_service["image"] == "ai4lab/ai4lab-digits:latest"
    assert digits_service["cpu"] == "1" and digits_service["memory"] == "1000Mi"
    assert digits_service["environment"]["variables"] == {"AI4LAB_FILE_ARG": "image",
                                                          "DEEPAAS_V2_MODEL": "ai4lab-digits"}
    assert len(service_name("x" * 200, "f" * 32)) <= 63


def test_fake_refuses_what_the_spec_refuses(server: FakeOscarServer, digits_service: dict) -> None:
    auth = ("oscar", "oscar-password")
    with httpx.Client(base_url=server.address, auth=auth) as c:
        r = c.post("/system/services", json={**digits_service, "imagee": "typo"})
        assert r.status_code == 400 and "imagee" in r.text
        r = c.post("/system/services", json={k: v for k, v in digits_service.items() if k != "script"})
        assert r.status_code == 400 and "'script' is a required property" in r.text
        r = c.post("/system/services", json={**digits_service, "cpu": 1})
        assert r.status_code == 400 and "cpu" in r.text
        assert c.post("/system/services", json={**digits_service, "name": "Bad_Name"}).status_code == 400
        assert c.patch("/system/services").status_code == 400
        assert c.get("/system/nothing").status_code == 400
        assert httpx.get(f"{server.address}/system/services").status_code == 401
        assert c.post("/run/anything", content=b"x").status_code == 401  # /run takes tokens only


def test_codec() -> None:
    body = base64.b64decode(encode_request({"size": 8}, {"image": ("a.png", b"\x89PNG...")}))
    assert b'"oscar-files"' in body and b'"file_format": "png"' in body
    assert decode_output(base64.b64encode(b'{"label": 3}').decode()).json == {"label": 3}
    png = decode_output(base64.b64encode(b"\x89PNG\r\n").decode())
    assert png.content == b"\x89PNG\r\n" and png.content_type == "image/png"
    assert decode_output("noise\nAI4LAB-ERROR 400 cannot read it\n").error == "cannot read it"
    with pytest.raises(ValueError, match="no output"):
        decode_output("Traceback: something broke")


async def test_backend_lifecycle_and_invocations(server: FakeOscarServer, digits_service: dict,
                                                 tmp_path: Path) -> None:
    backend = OscarBackend(OscarConfig(endpoint=server.address, user="oscar", password="oscar-password",
                                       ssl_verify=False))
    name = digits_service["name"]
    (path, label), = big_digits(tmp_path, n=1)
    refused_before = len(server.fake.refused)
    await backend.create_service(digits_service)
    try:
        with pytest.raises(OscarError) as err:
            await backend.create_service(digits_service)
        assert err.value.status == 409
        assert (await backend.get_service(name))["token"]
        result = await backend.run(name, encode_request({}, {"image": (path.name, path.read_bytes())}))
        assert result.json["label"] == label
        raw = await backend.run(name, base64.b64encode(path.read_bytes()))  # a raw file: the file argument
        assert raw.json["label"] == label
        refused = await backend.run(name, encode_request({}, {"image": ("x.png", b"not an image")}))
        assert refused.error and "cannot read" in refused.error
        await backend.submit_job(name, encode_request({}, {"image": (path.name, path.read_bytes())}))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            jobs = (await backend.jobs(name))["jobs"]
            if jobs and all(j["status"] != "Running" for j in jobs.values()):
                break
            await asyncio.sleep(0.5)
        (job, info), = jobs.items()
        assert info["status"] == "Succeeded", await backend.job_logs(name, job)
    finally:
        await backend.remove_service(name)
    assert await backend.get_service(name) is None
    assert server.fake.refused[refused_before:] == []  # every request the backend sent follows the spec
    await backend.aclose()


async def test_oidc_token_and_wrong_credentials(server: FakeOscarServer) -> None:
    ok = OscarBackend(OscarConfig(endpoint=server.address, token="oidc-access-token"))
    assert isinstance(await ok.list_services(), list)
    bad = OscarBackend(OscarConfig(endpoint=server.address, user="oscar", password="wrong"))
    with pytest.raises(OscarError) as err:
        await bad.list_services()
    assert err.value.status == 401


def test_not_configured_says_how(tmp_path: Path) -> None:
    with pytest.raises(PlatformError) as err:
        OscarServices(Platform.for_settings(Settings(state_dir=tmp_path, oscar_endpoint=None))).oscar()
    assert err.value.status == 400 and "oscar_endpoint" in str(err.value)
