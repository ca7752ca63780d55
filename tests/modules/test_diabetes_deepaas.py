"""ai4lab-diabetes behind the real upstream ``deepaas-run``, from its own environment.

``POST /v2/models/ai4lab-diabetes/predict/`` takes a CSV upload in field
``file`` or JSON rows in field ``rows``; training as for every DEEPaaS model.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from .conftest import DeepaasServer
from .helpers import env_python, wait_training

pytestmark = pytest.mark.xdist_group("modules")
NAME = "ai4lab-diabetes"
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.fixture(scope="module")
def server(deepaas_server: Callable[..., DeepaasServer]) -> DeepaasServer:
    return deepaas_server(NAME)


@pytest.fixture(scope="module")
def client(server: DeepaasServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def held_out(server: DeepaasServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "held-out.csv"
    env_python(server.env_dir, "-m", "ai4lab_diabetes.data", str(path), "--split", "test")
    return path


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def _predict_csv(client: httpx.Client, path: Path, **form: str) -> list[float]:
    r = client.post(f"/v2/models/{NAME}/predict/", files={"file": (path.name, path.read_bytes(), "text/csv")}, data=form)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "OK"
    return r.json()["predictions"]


def test_model_is_listed(client: httpx.Client) -> None:
    models = client.get("/v2/models/").json()["models"]
    assert [m["name"] for m in models] == [NAME] and models[0]["features"] == FEATURES


def test_predict_csv_upload_and_json_rows(client: httpx.Client, held_out: Path) -> None:
    rows = list(csv.DictReader(held_out.open()))
    y = np.array([float(r["target"]) for r in rows])
    preds = _predict_csv(client, held_out)
    assert len(preds) == len(rows) > 100
    assert _r2(y, np.array(preds)) > 0.3
    as_json = json.dumps([{f: float(r[f]) for f in FEATURES} for r in rows[:5]])
    r = client.post(f"/v2/models/{NAME}/predict/", data={"rows": as_json})
    assert r.status_code == 200 and r.json()["predictions"] == pytest.approx(preds[:5])


def test_predict_bad_requests(client: httpx.Client) -> None:
    r = client.post(f"/v2/models/{NAME}/predict/", data={"rows": "[[1, 2, 3]]"})
    assert r.status_code == 400 and "has 3 values" in r.text
    r = client.post(f"/v2/models/{NAME}/predict/", data={})
    assert r.status_code == 400 and "send a CSV" in r.text


def test_train_gradient_boosting_then_predict(server: DeepaasServer, client: httpx.Client, held_out: Path, tmp_path: Path) -> None:
    train_csv = tmp_path / "train.csv"
    env_python(server.env_dir, "-m", "ai4lab_diabetes.data", str(train_csv), "--split", "train")
    form = {"dataset": str(train_csv), "model": "gradient_boosting", "n_estimators": "100", "output_dir": str(tmp_path / "out")}
    r = client.post(f"/v2/models/{NAME}/train/", data=form)
    assert r.status_code == 200, r.text
    done = wait_training(client, NAME, r.json()["uuid"])
    assert done["status"] == "done", done
    result = done["result"]["output"]
    assert result["model"] == "gradient_boosting" and result["r2"] > 0.2 and result["rmse"] > 0
    y = np.array([float(r["target"]) for r in csv.DictReader(held_out.open())])
    assert _r2(y, np.array(_predict_csv(client, held_out, weights=result["model_path"]))) > 0.2
    r = client.post(f"/v2/models/{NAME}/train/", data={"dataset": str(train_csv), "model": "svm"})
    assert r.status_code == 422 and "model" in r.json()


def test_stop_leaves_no_process(server: DeepaasServer) -> None:
    server.stop()
    assert server.proc is not None and server.proc.returncode is not None
    assert server.leftovers() == []
