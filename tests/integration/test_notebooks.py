"""Every example notebook runs, cell by cell, in a real session's kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.kernel_client import execute_in_session
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def nb_user(platform: Platform) -> dict[str, str]:
    platform.add_user("nina", "nina-password", role="advanced")
    token = platform.token("nina")
    r = platform.api(token).post("/hub/api/users/nina/servers/notebooks", json={"cpu": 1, "ram_gb": 2})
    assert r.status_code in (201, 202), r.text
    platform.wait_server(token, "nina", "notebooks")
    platform.wait_mlflow(token)
    yield {"name": "nina", "token": token}
    platform.api(token).delete("/hub/api/users/nina/servers/notebooks")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_a_session(platform: Platform, nb_user: dict[str, str], path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    output = execute_in_session(platform.url, "nina/notebooks", nb_user["token"], code)
    assert "Traceback" not in output
    if "RUN " in output:  # the notebook logged an MLflow run: it must be on the server
        run_id = output.split("RUN ")[1].split()[0]
        r = platform.api(nb_user["token"]).get("/services/mlflow/api/2.0/mlflow/runs/get",
                                               params={"run_id": run_id})
        assert r.status_code == 200
        assert any(m["key"] == "slope" and abs(m["value"] - 3) < 0.1 for m in r.json()["run"]["data"]["metrics"])
    if path.name.startswith("01-"):  # it wrote its dataset into the user's storage
        r = platform.api(nb_user["token"]).get("/services/ai4lab/storage/datasets")
        assert "line.csv" in [e["name"] for e in r.json()["content"]]
