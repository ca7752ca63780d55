"""The DEEPaaS contract and the behaviour of predict / train, called as DEEPaaS calls them."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import webargs.core
from deepaas.model.v2.wrapper import UploadedFile
from marshmallow import ValidationError
from PIL import Image

from ai4lab_digits import api, data, model


def _upload(path: Path, content_type: str = "image/png") -> UploadedFile:
    """What DEEPaaS hands to predict for a multipart upload."""
    return UploadedFile(name="image", filename=str(path), content_type=content_type, original_filename=path.name)


def _schema(args: dict):
    return webargs.core.dict2schema(args)()


def test_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="deepaas.v2.model")}
    assert eps.get("ai4lab-digits") == "ai4lab_digits.api"


def test_metadata_is_json() -> None:
    meta = api.get_metadata()
    assert meta["name"] == "ai4lab-digits"
    assert {"description", "license", "version", "author"} <= set(meta)
    json.dumps(meta)


def test_predict_args_follow_deepaas_contract() -> None:
    """A file upload is a field with metadata type=file, location=form (as in DEEPaaS's test model)."""
    args = api.get_predict_args()
    image = args["image"]
    assert image.required
    assert image.metadata["type"] == "file" and image.metadata["location"] == "form"
    assert _schema(args).load({"image": object()})["weights"] == ""
    with pytest.raises(ValidationError):
        _schema(args).load({})


def test_warm_trains_and_caches_the_pretrained_model(model_dir: Path) -> None:
    api.warm()
    path = model.pretrained_path()
    assert path.is_file() and path.is_relative_to(model_dir)
    bundle = model.load_model(path)
    assert bundle["metrics"]["held_out_accuracy"] > 0.9
    before = path.stat().st_mtime_ns
    api.warm()  # cached: not retrained
    assert path.stat().st_mtime_ns == before


def test_predict_held_out_pngs(tmp_path: Path) -> None:
    written = data.write_dataset(tmp_path, n=150, split="test")
    results = [api.predict(image=_upload(p)) for p, _ in written]
    accuracy = np.mean([r["label"] == label for r, (_, label) in zip(results, written)])
    assert accuracy > 0.9
    r = results[0]
    assert set(r) == {"label", "probabilities", "weights"}
    assert set(r["probabilities"]) == {str(i) for i in range(10)}
    assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    json.dumps(r)


def test_predict_normalises_any_image(tmp_path: Path) -> None:
    """Big colour JPEGs with dark ink on paper, transparent PNGs, 8x8 originals."""
    _, (X, y) = data.split()
    hits = {"jpeg": 0, "rgba": 0, "tiny": 0}
    n = 60
    for i, (pixels, label) in enumerate(zip(X[:n], y[:n])):
        page = Image.new("RGB", (300, 220), (245, 243, 238))
        page.paste(data.digit_image(pixels, scale=15, invert=True, mode="RGB"), (90, 40))
        page.save(tmp_path / f"{i}.jpg", quality=85)
        ink = data.digit_image(pixels, scale=6)
        rgba = Image.new("RGBA", ink.size, (20, 20, 200, 0))
        rgba.putalpha(ink)
        rgba.save(tmp_path / f"{i}-rgba.png")
        data.digit_image(pixels, scale=1).save(tmp_path / f"{i}-tiny.png")
        hits["jpeg"] += api.predict(image=_upload(tmp_path / f"{i}.jpg", "image/jpeg"))["label"] == label
        hits["rgba"] += api.predict(image=_upload(tmp_path / f"{i}-rgba.png"))["label"] == label
        hits["tiny"] += api.predict(image=_upload(tmp_path / f"{i}-tiny.png"))["label"] == label
    assert {k: v / n for k, v in hits.items()} == {k: pytest.approx(1.0, abs=0.1) for k in hits}


def test_predict_rejects_non_images_and_blank_images(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        api.predict(image=_upload(bad, "text/plain"))
    Image.new("L", (32, 32), 255).save(tmp_path / "white.png")
    with pytest.raises(ValueError, match="blank"):
        api.predict(image=_upload(tmp_path / "white.png"))
    with pytest.raises(ValueError, match="model file not found"):
        api.predict(image=_upload(tmp_path / "white.png"), weights=str(tmp_path / "missing.joblib"))


def test_bad_request_survives_the_trip_from_the_worker_process() -> None:
    """DEEPaaS runs predict/train in a worker and pickles the exception back: it must stay a 400."""
    err = pickle.loads(pickle.dumps(api.BadRequest("cannot read 'x.txt' as an image")))
    assert isinstance(err, api.BadRequest) and isinstance(err, ValueError)
    assert err.status == 400 and err.reason == "cannot read 'x.txt' as an image"


def test_train_on_class_folders_then_predict_with_the_weights(train_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = api.train(dataset=str(train_folder), epochs=20, output_dir=str(out), test_fraction=0.2)
    json.dumps(summary)
    assert summary["accuracy"] > 0.9
    assert summary["n_train"] + summary["n_val"] == 600
    assert Path(summary["model_path"]) == out / "model.joblib" and (out / "model.joblib").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, 21))
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    written = data.write_dataset(tmp_path / "held-out", n=60, split="test")
    hits = [api.predict(image=_upload(p), weights=str(out / "model.joblib"))["label"] == label for p, label in written]
    assert np.mean(hits) > 0.85


def test_train_on_csv_from_pretrained(tmp_path: Path) -> None:
    csv_path = data.write_csv(tmp_path / "digits.csv", n=300)
    summary = api.train(
        dataset=str(csv_path), epochs=2, learning_rate=0.0005, init_weights="pretrained", output_dir=str(tmp_path / "ft")
    )
    assert summary["accuracy"] > 0.9  # fine-tuning starts from a good model


def test_train_rejects_bad_arguments(tmp_path: Path, train_folder: Path) -> None:
    schema = _schema(api.get_train_args())
    with pytest.raises(ValidationError) as err:
        schema.load({"dataset": "x", "test_fraction": 0.9, "epochs": 0})
    assert {"test_fraction", "epochs"} <= set(err.value.messages)
    with pytest.raises(ValidationError):
        schema.load({"epochs": 3})  # dataset is required
    with pytest.raises(ValueError, match="dataset not found"):
        api.train(dataset=str(tmp_path / "nope"), output_dir=str(tmp_path / "o"))
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "tabby").mkdir()
    with pytest.raises(ValueError, match="named 0..9"):
        api.train(dataset=str(tmp_path / "cats"), output_dir=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="test_fraction"):
        api.train(dataset=str(train_folder), test_fraction=0.9, output_dir=str(tmp_path / "o"))
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b,label\n1,2,3\n")
    with pytest.raises(ValueError, match="64 pixel columns"):
        api.train(dataset=str(bad_csv), output_dir=str(tmp_path / "o"))


def test_train_logs_params_and_epoch_metrics_to_mlflow(
    train_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow >= 3.7 refuses file stores otherwise
    summary = api.train(dataset=str(train_folder), epochs=4, output_dir=str(tmp_path / "run"))
    client = mlflow.tracking.MlflowClient()
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.params["epochs"] == "4" and run.data.params["hidden_units"] == "[64]"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert history[-1].value == pytest.approx(summary["accuracy"])
    assert {"loss", "train_accuracy", "final_val_accuracy"} <= set(run.data.metrics)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"model.joblib", "metrics.json"}


def test_data_helper_command_line(tmp_path: Path) -> None:
    data.main([str(tmp_path / "d"), "--n", "20", "--split", "test"])
    files = sorted((tmp_path / "d").rglob("*.png"))
    assert len(files) == 20 and all(f.parent.name in "0123456789" for f in files)
    assert Image.open(files[0]).size == (32, 32)
    assert os.path.getsize(data.write_csv(tmp_path / "d.csv", n=5)) > 0


def test_api_module_does_not_import_scikit_learn() -> None:
    """DEEPaaS imports the API in its server process: keep that import light (see config.py)."""
    import subprocess
    import sys

    code = "import sys, ai4lab_digits.api as a; a.get_metadata(); a.get_predict_args(); a.get_train_args(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
