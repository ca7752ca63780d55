"""The DEEPaaS contract and the behaviour of predict / train, called as DEEPaaS calls them."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import webargs.core
from deepaas.model.v2.wrapper import UploadedFile
from marshmallow import ValidationError
from sklearn.metrics import r2_score

from ai4lab_diabetes import api, data, model


def _upload(path: Path) -> UploadedFile:
    """What DEEPaaS hands to predict for a multipart upload."""
    return UploadedFile(name="file", filename=str(path), content_type="text/csv", original_filename=path.name)


def _schema(args: dict):
    return webargs.core.dict2schema(args)()


def test_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="deepaas.v2.model")}
    assert eps.get("ai4lab-diabetes") == "ai4lab_diabetes.api"


def test_metadata_and_args_follow_deepaas_contract() -> None:
    meta = api.get_metadata()
    assert meta["name"] == "ai4lab-diabetes" and meta["features"] == model.FEATURES
    json.dumps(meta)
    args = api.get_predict_args()
    assert args["file"].metadata == {**args["file"].metadata, "type": "file", "location": "form"}
    assert _schema(args).load({}) == {"file": None, "rows": "", "weights": ""}
    train_args = _schema(api.get_train_args())
    assert train_args.load({"dataset": "d.csv"})["model"] == "ridge"
    with pytest.raises(ValidationError) as err:
        train_args.load({"dataset": "d.csv", "model": "svm", "alpha": -1, "test_fraction": 0.01})
    assert {"model", "alpha", "test_fraction"} <= set(err.value.messages)


def test_predict_held_out_csv(test_csv: Path, model_dir: Path) -> None:
    api.warm()
    assert model.pretrained_path().is_relative_to(model_dir)
    preds = api.predict(file=_upload(test_csv))
    (_, _), (_, y) = data.split()
    assert len(preds) == len(y) and all(isinstance(p, float) for p in preds)
    assert r2_score(y, preds) > 0.3
    assert model.load_model(model.pretrained_path())["metrics"]["r2"] == pytest.approx(r2_score(y, preds), abs=1e-3)


def test_predict_json_rows_in_every_shape(test_csv: Path) -> None:
    _, (X, _) = data.split()
    from_csv = api.predict(file=_upload(test_csv))[:3]
    as_objects = json.dumps([dict(zip(model.FEATURES, row)) for row in X[:3].tolist()])
    assert api.predict(rows=as_objects) == pytest.approx(from_csv)
    assert api.predict(rows=json.dumps(X[:3].tolist())) == pytest.approx(from_csv)
    assert api.predict(rows=json.dumps(X[0].tolist())) == pytest.approx(from_csv[:1])
    assert api.predict(rows=json.dumps(dict(zip(model.FEATURES, X[0].tolist())))) == pytest.approx(from_csv[:1])


def test_predict_rejects_bad_input(tmp_path: Path, test_csv: Path) -> None:
    with pytest.raises(ValueError, match="either"):
        api.predict(file=_upload(test_csv), rows="[]")
    with pytest.raises(ValueError, match="send a CSV"):
        api.predict()
    with pytest.raises(ValueError, match="not valid JSON"):
        api.predict(rows="{age: 1")
    with pytest.raises(ValueError, match="has 3 values"):
        api.predict(rows="[[1, 2, 3]]")
    with pytest.raises(ValueError, match="lacks"):
        api.predict(rows='{"age": 50}')
    bad = tmp_path / "bad.csv"
    bad.write_text("age,sex\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        api.predict(file=_upload(bad))
    err = pickle.loads(pickle.dumps(api.BadRequest("x")))  # travels back from DEEPaaS's worker
    assert isinstance(err, ValueError) and err.status == 400 and err.reason == "x"


@pytest.mark.parametrize(
    ("kwargs", "min_r2"),
    [({"model": "ridge", "alpha": 3.0}, 0.3), ({"model": "gradient_boosting", "n_estimators": 80, "learning_rate": 0.05}, 0.2)],
)
def test_train_then_predict_with_the_weights(train_csv: Path, test_csv: Path, tmp_path: Path, kwargs: dict, min_r2: float) -> None:
    out = tmp_path / "run"
    summary = api.train(dataset=str(train_csv), output_dir=str(out), **kwargs)
    json.dumps(summary)
    assert summary["r2"] > min_r2 and summary["rmse"] > 0 and summary["mae"] > 0
    assert Path(summary["model_path"]).is_file() and (out / "metrics.json").is_file()
    stages = json.loads((out / "metrics.json").read_text())["stages"]
    assert len(stages) == kwargs.get("n_estimators", 0)
    preds = api.predict(file=_upload(test_csv), weights=summary["model_path"])
    (_, _), (_, y) = data.split()
    assert r2_score(y, preds) > min_r2


def test_train_rejects_bad_arguments(tmp_path: Path, train_csv: Path) -> None:
    with pytest.raises(ValueError, match="dataset not found"):
        api.train(dataset=str(tmp_path / "nope.csv"), output_dir=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="model must be"):
        api.train(dataset=str(train_csv), model="svm", output_dir=str(tmp_path / "o"))
    no_target = data.write_csv(tmp_path / "nt.csv", n=20, with_target=False)
    with pytest.raises(ValueError, match="missing columns"):
        api.train(dataset=str(no_target), output_dir=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="at least 10 rows"):
        api.train(dataset=str(data.write_csv(tmp_path / "few.csv", n=5)), output_dir=str(tmp_path / "o"))


def test_train_logs_to_mlflow(train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow >= 3.7 refuses file stores otherwise
    summary = api.train(dataset=str(train_csv), model="gradient_boosting", n_estimators=20, output_dir=str(tmp_path / "r"))
    client = mlflow.tracking.MlflowClient()
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.params["model"] == "gradient_boosting" and run.data.params["n_estimators"] == "20"
    assert run.data.metrics["r2"] == pytest.approx(summary["r2"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_rmse")] == list(range(1, 21))


def test_data_helper_command_line(tmp_path: Path) -> None:
    data.main([str(tmp_path / "d.csv"), "--split", "test", "--n", "7"])
    X, y = model.read_csv(tmp_path / "d.csv", with_target=True)
    assert X.shape == (7, 10) and np.allclose(X, data.select("test", 7)[0])


def test_api_module_does_not_import_scikit_learn() -> None:
    """DEEPaaS imports the API in its server process: keep that import light (see config.py)."""
    import subprocess
    import sys

    code = "import sys, ai4lab_diabetes.api as a; a.get_metadata(); a.get_predict_args(); a.get_train_args(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
