"""OSCAR's errors keep their reason and get their own status: only a real conflict is a 409.

Against the spec-validating fake (``tests/fakes/oscar.py``), whose ``faults``
give the answers a real cluster gives and the fake never would (its own 500, a
conflict between two creations).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ai4lab.backends.oscar import OscarBackend, OscarConfig, OscarError
from ai4lab.catalog.metadata import load_folder
from ai4lab.core import db
from ai4lab.core import deployments as deps
from ai4lab.core.settings import Settings, bundled_catalog_path
from ai4lab.core.errors import PlatformError
from ai4lab.deploy.lifecycle import Caller, Platform
from ai4lab.deploy.serverless import OscarServices, ServerlessRequest
from ai4lab.oscar import build_service
from tests.fakes.oscar import FakeOscar, FakeOscarServer

DIGITS = bundled_catalog_path() / "modules" / "ai4lab-digits"
SERVICES = "/system/services"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOscarServer]:
    with FakeOscarServer(FakeOscar()) as srv:  # nothing is run here: no images
        yield srv


@pytest.fixture
def backend(server: FakeOscarServer) -> Iterator[OscarBackend]:
    server.fake.faults.clear()
    yield OscarBackend(OscarConfig(endpoint=server.address, user=server.fake.user, password=server.fake.password))
    server.fake.faults.clear()


def service(name: str) -> dict:
    item = load_folder(DIGITS, kind="module", source="bundled")
    return build_service(item, name, cluster_id="fake-oscar", owner="errors", dep_id="e0", file_arg="image")


async def test_only_an_existing_service_is_a_conflict(backend: OscarBackend, server: FakeOscarServer) -> None:
    await backend.create_service(service("ai4lab-errors-conflict"))
    try:
        with pytest.raises(OscarError) as err:  # oscar-python finds it and refuses before sending
            await backend.create_service(service("ai4lab-errors-conflict"))
        assert err.value.status == 409 and "already present" in str(err.value)
        assert err.value.answer_status == 409
    finally:
        await backend.remove_service("ai4lab-errors-conflict")

    # another ValueError of oscar-python (a definition it cannot read) is no conflict, and says what it is
    with pytest.raises(OscarError) as err:
        await backend.create_service("/no/such/service.yaml")  # type: ignore[arg-type]
    assert err.value.status == 400, err.value
    assert "Service definition must be a dictionary or a file path" in str(err.value)
    assert "already present" not in str(err.value)

    # a server error of the cluster keeps the cluster's reason: 502 for the platform's caller
    server.fake.faults[("POST", SERVICES)] = (500, "the cluster's etcd does not answer")
    with pytest.raises(OscarError) as err:
        await backend.create_service(service("ai4lab-errors-500"))
    assert err.value.status == 500 and "the cluster's etcd does not answer" in str(err.value)
    assert err.value.answer_status == 502
    assert await backend.get_service("ai4lab-errors-500") is None


@pytest.fixture
def serverless(server: FakeOscarServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OscarServices:
    settings = Settings(state_dir=tmp_path / "state", **server.settings())  # type: ignore[arg-type]
    settings.state.mkdir(parents=True)
    db.upgrade(settings.db_url)
    sd = OscarServices(Platform.for_settings(settings))

    async def file_arg(item: object) -> str:  # what the digits module takes; no environment built for it here
        return "image"

    monkeypatch.setattr(sd, "file_arg", file_arg)
    server.fake.faults.clear()
    return sd


@pytest.mark.parametrize(("answer", "text", "status"), [
    (500, "the cluster's etcd does not answer", 502),
    (503, "Knative is being upgraded", 502),
    (400, "Invalid service definition: memory", 400),
    (409, "A service with the provided name already exists", 409),
])
async def test_serverless_answers_with_the_clusters_reason(serverless: OscarServices,
                                                           server: FakeOscarServer, answer: int, text: str,
                                                           status: int) -> None:
    server.fake.faults[("POST", SERVICES)] = (answer, text)
    item = load_folder(DIGITS, kind="module", source="bundled")
    with pytest.raises(PlatformError) as err:
        await serverless.create(ServerlessRequest(kind="serverless", item=item.id), Caller(name="errors"))
    assert err.value.status == status, err.value
    assert text in str(err.value) and f"OSCAR answered {answer}" in str(err.value)
    dep, = deps.list_deployments(serverless.settings.db_url)
    assert dep.status == "failed" and text in dep.status_reason
    assert not server.fake.faults  # the request reached the fake, spec-checked


async def test_serverless_with_wrong_credentials_is_a_bad_gateway(serverless: OscarServices,
                                                                   server: FakeOscarServer) -> None:
    """The platform's own OSCAR password is wrong: nothing the caller can fix, and not a conflict."""
    serverless.settings.oscar_password = "not-the-password"
    with pytest.raises(PlatformError) as err:
        await serverless.create(ServerlessRequest(kind="serverless", item="ai4lab-digits"), Caller(name="errors"))
    assert err.value.status == 502 and "401" in str(err.value), err.value
