"""The notebook widgets driven like a person would (values set, buttons pressed) against the real platform."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ai4lab.client import Client
from ai4lab.core.envs import ensure_env, env_bin
from ai4lab.core.settings import bundled_catalog_path
from ai4lab.client.widgets import CatalogBrowser, PredictWidget, TrainingLauncher, svg_plot
from tests.integration.test_module_deployments import held_out  # noqa: F401 - the digit PNGs fixture
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]


def client_for(platform: Platform, name: str, role: str) -> Client:
    platform.add_user(name, f"{name}-password", role=role)
    return Client(f"{platform.url}/services/ai4lab", platform.token(name))


@pytest.fixture(scope="module")
def basic(platform: Platform) -> Client:
    return client_for(platform, "wanda", "basic")


def upload_value(name: str, content: bytes, ctype: str) -> tuple[dict, ...]:
    return ({"name": name, "type": ctype, "size": len(content), "content": memoryview(content),
             "last_modified": datetime.now(timezone.utc)},)


def test_catalog_browser_search_details_and_filters(basic: Client) -> None:
    browser = CatalogBrowser(basic)
    assert len(browser.items) >= 3 and "modules" in browser.message.value
    browser.query.value = "digit"  # what pressing Enter in the search box does
    ids = [value for _, value in browser.results.options]
    assert ids[0] == "ai4lab-digits"
    browser.results.value = "ai4lab-digits"
    assert "<h3>ai4lab-digits" in browser.details.value
    assert "<strong>Inference</strong>" in browser.details.value  # the description, rendered
    browser.query.value = ""
    browser.gpu.value = True  # choosing a filter searches again
    assert browser.items and all(it["gpu_capable"] for it in browser.items)
    assert "ai4lab-digits" not in [value for _, value in browser.results.options]
    browser.gpu.value = None
    assert browser.search("no such thing at all zzz") == []
    assert browser.message.value.startswith("0 modules") and browser.details.value == ""


def test_catalog_browser_shows_api_errors(platform: Platform) -> None:
    browser = CatalogBrowser(Client(f"{platform.url}/services/ai4lab", "not-a-token"))
    assert "401" in browser.message.value and "invalid or expired token" in browser.message.value
    assert browser.results.options == ()


def test_predict_widget_digit_and_readable_errors(basic: Client, held_out: list[tuple[Path, int]]) -> None:  # noqa: F811
    widget = PredictWidget(basic, "ai4lab-digits")
    assert widget.file_field == "image" and widget.inputs == {}, widget.output.value
    widget.predict_button.click()
    assert "choose a file" in widget.output.value
    path, label = held_out[0]
    widget.upload.value = upload_value(path.name, path.read_bytes(), "image/png")
    widget.predict_button.click()
    assert f"Predicted label: {label}" in widget.output.value
    assert "probabilities" in widget.output.value
    widget.upload.value = upload_value("notes.txt", b"this is not an image", "text/plain")
    assert widget.predict() is None
    assert "ai4lab-error" in widget.output.value and "400" in widget.output.value
    assert "Traceback" not in widget.output.value


def test_predict_widget_other_fields_and_unknown_module(basic: Client) -> None:
    widget = PredictWidget(basic, "ai4lab-diabetes")
    assert widget.file_field == "file" and "rows" in widget.inputs
    csv = b"age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n59,2,32.1,101,157,93.2,38,4,4.8598,87\n"
    widget.upload.value = upload_value("patients.csv", csv, "text/csv")
    predictions = widget.predict()
    assert predictions is not None, widget.output.value
    assert len(predictions) == 1 and 25 <= float(predictions[0]) <= 346
    missing = PredictWidget(basic, "no-such-module")
    assert "404" in missing.output.value and "no-such-module" in missing.output.value


def test_training_launcher_refused_for_basic_users(basic: Client) -> None:
    launcher = TrainingLauncher(basic, "ai4lab-digits", auto_poll=False)
    launcher.start_button.click()
    assert "say which dataset" in launcher.status.value
    launcher.dataset.value = "datasets/digits.csv"
    launcher.start_button.click()
    assert "403" in launcher.status.value and "intermediate" in launcher.status.value
    assert launcher.training is None and launcher.poll() is None


def test_training_launcher_trains_and_plots_metrics(platform: Platform, tmp_path: Path) -> None:
    trainer = client_for(platform, "walt", "intermediate")
    platform.wait_mlflow(platform.token("walt"))
    env = ensure_env(bundled_catalog_path() / "modules" / "ai4lab-digits")
    csv = tmp_path / "digits.csv"
    subprocess.run([str(env_bin(env, "python")), "-c",
                    "import sys; from ai4lab_digits.data import write_csv; write_csv(sys.argv[1], n=300)", str(csv)],
                   check=True, capture_output=True)
    trainer.upload(csv, "datasets/digits.csv")
    launcher = TrainingLauncher(trainer, "ai4lab-digits", every=0.5)
    launcher.dataset.value = "datasets/nowhere.csv"
    launcher.start_button.click()
    assert "400" in launcher.status.value and "nowhere" in launcher.status.value
    launcher.dataset.value = "datasets/digits.csv"
    launcher.epochs.value = 4
    launcher.start_button.click()
    assert launcher.training_id and launcher.start_button.disabled
    launcher._thread.join(timeout=240)  # the widget's own polling loop, until the training ends
    assert not launcher._thread.is_alive()
    assert launcher.training["status"] == "succeeded", launcher.training
    assert "succeeded" in launcher.status.value and not launcher.start_button.disabled
    assert [p["step"] for p in launcher.metrics["loss"]] == [1, 2, 3, 4]  # one point per epoch
    assert launcher.plot.value.count("<polyline") == len(launcher.metrics)
    assert all(f'data-metric="{name}"' in launcher.plot.value for name in launcher.metrics)


def test_svg_plot_scales_each_metric() -> None:
    assert "no metrics" in svg_plot({})
    out = svg_plot({"loss": [{"step": 0, "value": 2.0}, {"step": 1, "value": 1.0}],
                    "acc": [{"step": 0, "value": 0.5}]}, width=100, height=50)
    assert 'points="10.0,10.0 90.0,40.0"' in out  # loss falls from top-left to bottom-right
    assert 'data-metric="acc"' in out and "acc: 0.5" in out
