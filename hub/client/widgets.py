"""Notebook widgets (ipywidgets) over :class:`ai4lab.client.Client`: the marketplace, "try it" and trainings.

In an ai4lab session they need no arguments beyond the module::

    from ai4lab.client.widgets import CatalogBrowser, PredictWidget, TrainingLauncher
    CatalogBrowser()
    PredictWidget(item_id="ai4lab-digits")
    TrainingLauncher(item_id="ai4lab-digits")

Errors of the platform API are shown in the widget as text, not raised. Each widget is an
``ipywidgets.VBox``; the button handlers (``search``, ``predict``, ``start``, ``poll``) can also be called
directly.
"""

from __future__ import annotations

import html
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as w

from ai4lab.client import ApiError, Client
from ai4lab.core.statuses import ACTIVE_STATUSES

ACTIVE = ACTIVE_STATUSES


def _error_html(message: str) -> str:
    return f'<div class="ai4lab-error" style="color:#b42318">{html.escape(message)}</div>'


def _json_html(value: Any) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=2, default=str))}</pre>"


def _client(client: Client | None) -> Client:
    return client if client is not None else Client()


class CatalogBrowser(w.VBox):
    """Search box, a list of matching modules (or tools) and the details of the one selected."""

    def __init__(self, client: Client | None = None, kind: str = "modules", **kwargs: Any) -> None:
        self.client = _client(client)
        self.kind = kind
        self.query = w.Text(
            placeholder="search modules and tools", continuous_update=False, layout=w.Layout(width="60%")
        )
        self.gpu = w.Dropdown(
            options=[("any", None), ("GPU", True), ("CPU only", False)], value=None, description="GPU"
        )
        self.search_button = w.Button(description="Search", button_style="primary", icon="search")
        self.results = w.Select(options=[], rows=8, layout=w.Layout(width="100%"))
        self.message = w.HTML()
        self.details = w.HTML()
        self.items: list[dict[str, Any]] = []
        self.search_button.on_click(lambda _: self.search())
        self.query.observe(lambda _: self.search(), names="value")
        self.gpu.observe(lambda _: self.search(), names="value")
        self.results.observe(self._on_select, names="value")
        super().__init__(
            [w.HBox([self.query, self.gpu, self.search_button]), self.message, self.results, self.details], **kwargs
        )
        self.search()

    def search(self, q: str | None = None) -> list[dict[str, Any]]:
        if q is not None and q != self.query.value:
            self.query.value = q  # the observer searches
            return self.items
        try:
            self.items = self.client.catalog(self.kind, q=self.query.value.strip() or None, gpu=self.gpu.value)
        except ApiError as e:
            self.items = []
            self.message.value = _error_html(str(e))
        else:
            n = len(self.items)
            self.message.value = f"{n} {self.kind[:-1]}{'' if n == 1 else 's'}"
        self.results.options = [(f"{it['title']} — {it['summary'][:70]}", it["id"]) for it in self.items]
        if not self.items:
            self.details.value = ""
        return self.items

    def _on_select(self, change: dict[str, Any]) -> None:
        if change.get("new"):
            self.show(change["new"])

    def show(self, item_id: str) -> dict[str, Any] | None:
        try:
            item = self.client.item(item_id, self.kind)
        except ApiError as e:
            self.details.value = _error_html(str(e))
            return None
        tags = " ".join(f"<code>{html.escape(t)}</code>" for t in item.get("tags", []))
        gpu = " <b>GPU</b>" if item.get("gpu_capable") else ""
        links = "".join(
            f'<li>{html.escape(k)}: <a href="{html.escape(v)}" target="_blank">{html.escape(v)}</a></li>'
            for k, v in item.get("links", {}).items()
            if str(v).startswith(("http://", "https://"))
        )
        self.details.value = (
            f"<h3>{html.escape(item['title'])}{gpu}</h3><p><i>{html.escape(item['summary'])}</i></p>"
            f"<p>{tags}</p><p>source: {html.escape(item['source'])}"
            f"{' · runs here' if item.get('runs_locally') else ''}</p>"
            f"<div>{item.get('description_html', '')}</div>"  # rendered and sanitised by the platform
            f"{'<ul>' + links + '</ul>' if links else ''}"
        )
        return item


class PredictWidget(w.VBox):
    """Upload a file (and fill the module's other predict fields), predict without a deployment."""

    def __init__(
        self, client: Client | None = None, item_id: str = "", file_field: str | None = None, **kwargs: Any
    ) -> None:
        self.client = _client(client)
        self.item_id = item_id
        self.output = w.HTML()
        self.inputs: dict[str, w.Text] = {}
        try:
            described = self.client._call("GET", f"/marketplace/modules/{item_id}/predict-args")
        except ApiError as e:
            described = []
            self.output.value = _error_html(str(e))
        for f in described:
            if f["file"]:
                file_field = file_field or f["name"]
            elif f["name"] != "weights":
                self.inputs[f["name"]] = w.Text(description=f["name"], placeholder=f.get("description", "")[:80])
        self.file_field: str = file_field or "file"
        self.upload = w.FileUpload(description=f"{self.file_field}", multiple=False)
        self.predict_button = w.Button(description="Predict", button_style="primary")
        self.predict_button.on_click(lambda _: self.predict())
        super().__init__(
            [
                w.HTML(f"<b>Try {html.escape(item_id)}</b>"),
                self.upload,
                *self.inputs.values(),
                self.predict_button,
                self.output,
            ],
            **kwargs,
        )

    def predict(self) -> Any:
        fields = {k: t.value for k, t in self.inputs.items() if t.value.strip()}
        uploaded = list(self.upload.value)
        if not uploaded and not fields:
            self.output.value = _error_html("choose a file to upload first")
            return None
        self.output.value = "<i>predicting…</i>"
        with tempfile.TemporaryDirectory(prefix="ai4lab-widget-") as tmp:
            files = None
            if uploaded:
                f = uploaded[0]
                path = Path(tmp) / Path(f["name"]).name
                path.write_bytes(bytes(f["content"]))
                files = {self.file_field: path}
            try:
                result = self.client.try_module(self.item_id, files=files, **fields)
            except ApiError as e:
                self.output.value = _error_html(str(e))
                return None
        predictions = result.get("predictions") if isinstance(result, dict) else result
        label = ""
        if isinstance(predictions, dict) and "label" in predictions:
            label = f'<p style="font-size:1.2em"><b>Predicted label: {html.escape(str(predictions["label"]))}</b></p>'
        self.output.value = label + _json_html(predictions)
        return predictions


def svg_plot(metrics: dict[str, list[dict[str, float]]], width: int = 420, height: int = 200) -> str:
    """One polyline per metric (each scaled to its own range), as inline SVG with a legend."""
    colours = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bf8700", "#0a3069"]
    series = [(name, points) for name, points in sorted(metrics.items()) if points]
    if not series:
        return "<i>no metrics yet</i>"
    pad = 10
    steps = [p["step"] for _, points in series for p in points]
    s0, s1 = min(steps), max(steps)
    lines, legend = [], []
    for i, (name, points) in enumerate(series):
        values = [p["value"] for p in points]
        v0, v1 = min(values), max(values)
        xy = []
        for p in points:
            x = pad + (width - 2 * pad) * ((p["step"] - s0) / (s1 - s0) if s1 > s0 else 0.5)
            y = height - pad - (height - 2 * pad) * ((p["value"] - v0) / (v1 - v0) if v1 > v0 else 0.5)
            xy.append(f"{x:.1f},{y:.1f}")
        colour = colours[i % len(colours)]
        lines.append(
            f'<polyline class="metric" data-metric="{html.escape(name)}" fill="none" stroke="{colour}" '
            f'stroke-width="2" points="{" ".join(xy)}"/>'
        )
        legend.append(
            f'<span style="color:{colour}">■ {html.escape(name)}: {values[-1]:.4g} (step {points[-1]["step"]})</span>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'style="border:1px solid #d9e2ec;background:#fff">{"".join(lines)}</svg>'
        f"<div>{' &nbsp; '.join(legend)}</div>"
    )


def dataset_choices(client: Client) -> list[str]:
    """What a dataset picker offers: each folder under ``datasets/`` (``GET /datasets``), then its data files.

    A help, not a condition: when the list cannot be read, the field is typed in as before.
    """
    try:
        entries = client.datasets()
    except ApiError:
        return []
    return [p for d in entries for p in (d["path"], *(f"{d['path']}/{f}" for f in d.get("data_files", [])))]


class TrainingLauncher(w.VBox):
    """Start a training of a module on a dataset of your storage and watch its metrics."""

    def __init__(
        self,
        client: Client | None = None,
        item_id: str = "",
        dataset: str = "",
        epochs: int = 10,
        every: float = 2.0,
        auto_poll: bool = True,
        **kwargs: Any,
    ) -> None:
        self.client = _client(client)
        self.item_id = item_id
        self.every = every
        self.auto_poll = auto_poll
        self.training: dict[str, Any] | None = None
        self.metrics: dict[str, list[dict[str, float]]] = {}
        # the dataset picker: the user's datasets and their files offered, any storage path accepted
        self.dataset = w.Combobox(
            value=dataset,
            options=dataset_choices(self.client),
            ensure_option=False,
            description="dataset",
            placeholder="folder or file in your storage",
        )
        self.epochs = w.BoundedIntText(value=epochs, min=1, max=100_000, description="epochs")
        self.start_button = w.Button(description="Start training", button_style="primary")
        self.status = w.HTML()
        self.plot = w.HTML()
        self.start_button.on_click(lambda _: self.start())
        self._thread: threading.Thread | None = None
        super().__init__(
            [
                w.HTML(f"<b>Train {html.escape(item_id)}</b>"),
                self.dataset,
                self.epochs,
                self.start_button,
                self.status,
                self.plot,
            ],
            **kwargs,
        )

    @property
    def training_id(self) -> str | None:
        return self.training["id"] if self.training else None

    def start(self) -> dict[str, Any] | None:
        if not self.dataset.value.strip():
            self.status.value = _error_html("say which dataset of your storage to train on")
            return None
        try:
            self.training = self.client.train(
                self.item_id, dataset=self.dataset.value.strip(), epochs=int(self.epochs.value)
            )
        except ApiError as e:
            self.status.value = _error_html(str(e))
            return None
        self.metrics = {}
        self.plot.value = ""
        self._show_status()
        self.start_button.disabled = True
        if self.auto_poll:
            self._thread = threading.Thread(target=self._poll_loop, daemon=True)
            self._thread.start()
        return self.training

    def poll(self) -> dict[str, Any] | None:
        """Read the training's status and metrics once and redraw; the training, or None on error."""
        if not self.training:
            return None
        try:
            self.training = self.client.deployment(self.training["id"])
            self.metrics = self.client.metrics(self.training["id"])
        except ApiError as e:
            self.status.value = _error_html(str(e))
            return None
        self._show_status()
        self.plot.value = svg_plot(self.metrics)
        if self.training["status"] not in ACTIVE:
            self.start_button.disabled = False
        return self.training

    def _poll_loop(self) -> None:
        while True:
            time.sleep(self.every)
            dep = self.poll()
            if dep is None or dep["status"] not in ACTIVE:
                return

    def _show_status(self) -> None:
        t = self.training or {}
        reason = f" — {html.escape(t['status_reason'])}" if t.get("status_reason") else ""
        self.status.value = (
            f"training <code>{html.escape(str(t.get('id')))}</code>: "
            f'<b class="status">{html.escape(str(t.get("status")))}</b>{reason}'
        )
