"""predict and train as DEEPaaS calls them; continuing a training; two data-parallel workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from deepaas.model.v2.wrapper import UploadedFile
from PIL import Image, ImageDraw

from ai4lab_torch_digits import api, data, model


def test_entry_point_and_metadata() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="deepaas.v2.model")}
    assert eps.get("ai4lab-torch-digits") == "ai4lab_torch_digits.api"
    assert api.get_metadata()["name"] == "ai4lab-torch-digits"


def test_predict_a_drawn_one(tmp_path: Path) -> None:
    img = Image.new("L", (80, 80), 255)
    ImageDraw.Draw(img).line([(40, 10), (40, 70)], fill=0, width=9)
    path = tmp_path / "one.png"
    img.save(path)
    upload = UploadedFile(name="image", filename=str(path), content_type="image/png", original_filename="one.png")
    out = api.predict(image=upload, weights="")
    assert out["label"] == 1 and out["weights"] == "pretrained"
    with pytest.raises(api.BadRequest, match="not an image"):
        (tmp_path / "x.png").write_text("no")
        api.predict(image=upload._replace(filename=str(tmp_path / "x.png")))


def test_train_then_continue(tmp_path: Path) -> None:
    first = api.train(epochs=3, output_dir=str(tmp_path / "a"))
    assert first["epochs_done"] == 3 and Path(first["model_path"]).is_file()
    more = api.train(epochs=2, output_dir=str(tmp_path / "b"), init_weights=first["model_path"])
    assert (more["start_epoch"], more["epochs_done"]) == (3, 5)
    history = json.loads(Path(more["metrics_path"]).read_text())["history"]
    assert len(history) == 2 and more["loss"] < first["loss"]
    with pytest.raises(api.BadRequest, match="not a model file"):
        (tmp_path / "junk.pt").write_text("junk")
        api.train(epochs=1, output_dir=str(tmp_path / "c"), init_weights=str(tmp_path / "junk.pt"))
    with pytest.raises(api.BadRequest, match="expected columns"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        api.train(dataset=str(tmp_path / "bad.csv"), output_dir=str(tmp_path / "d"))


def test_two_gloo_workers_average_their_losses(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import json, sys; from ai4lab_torch_digits import model; "
        "print('RESULT ' + json.dumps(model.train(dataset=None, output_dir=sys.argv[1], epochs=2)))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "out")],
            env={**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "MLFLOW_TRACKING_URI": ""},
            stdout=subprocess.PIPE, text=True,
        )
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = [json.loads(o.split("RESULT ")[1]) for o in outs]
    assert [r["rank"] for r in results] == [0, 1] and results[0]["workers"] == 2
    assert "model_path" in results[0] and "model_path" not in results[1]
    x, y = data.read_csv(None)
    assert results[0]["n_train"] + results[0]["n_val"] == len(y)
    # both ranks printed the same averaged loss, each its own shard's loss
    assert "rank 1 epoch 2: loss=" in outs[1] and "loss_rank1=" in outs[1]
    avg = [line.split("loss=")[1].split(",")[0] for o in outs for line in o.splitlines() if " epoch 2:" in line]
    assert avg[0] == avg[1]
