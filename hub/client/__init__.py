"""Python client of the platform API, for notebooks, scripts and the CLI.

Inside an ai4lab session it needs no arguments: ``AI4LAB_API_URL`` and
``AI4LAB_API_TOKEN`` are set there. Elsewhere pass the platform URL (e.g.
``http://127.0.0.1:8000/services/ai4lab``) and a hub API token.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ai4lab.core.statuses import ACTIVE_STATUSES

CHUNK = 1 << 20  # uploads and downloads go in parts of 1 MiB


def _storage(path: str) -> str:
    return "/storage/" + quote(path.strip("/"))


def _reason(r: httpx.Response) -> str:
    """The platform's sentence; for a 422, each field at fault as ``where: what``."""
    try:
        detail = r.json().get("detail", r.text)
    except (ValueError, AttributeError):
        return r.text
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'body'}: {e.get('msg')}"
            for e in detail
            if isinstance(e, dict)
        )
    return str(detail)


def _secrets_fields(secrets: list[str] | None, secrets_as: str) -> dict[str, Any]:
    """The request fields naming secrets, left out when there are none (kinds without them still accept it)."""
    return {"secrets": list(secrets), "secrets_as": secrets_as} if secrets else {}


class ApiError(RuntimeError):
    """The API refused a request; ``status`` is the HTTP status, the message its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 300) -> None:
        url = url or os.environ.get("AI4LAB_API_URL")
        token = token or os.environ.get("AI4LAB_API_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
        if not url:
            raise ValueError("no platform URL: pass url= or set AI4LAB_API_URL (e.g. http://host/services/ai4lab)")
        if not token:
            raise ValueError("no API token: pass token= or set AI4LAB_API_TOKEN (`ai4lab users token NAME`)")
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"token {token}"}, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _stream(self, method: str, path: str) -> Iterator[httpx.Response]:
        """An answer read as it arrives (downloads), with errors raised as by ``_call``."""
        try:
            with self.http.stream(method, path) as r:
                if r.status_code >= 400:
                    r.read()
                    raise ApiError(r.status_code, f"{r.status_code}: {_reason(r)}")
                yield r
        except httpx.TransportError as e:
            raise ApiError(0, f"cannot reach the platform at {self.url}: {e}") from None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ApiError(0, f"cannot reach the platform at {self.url}: {e}") from None
        if r.status_code >= 400:
            raise ApiError(r.status_code, f"{r.status_code}: {_reason(r)}")
        ctype = r.headers.get("content-type", "")
        return r.json() if ctype.startswith("application/json") else r.content

    # -- who, what --------------------------------------------------------------------
    def me(self) -> dict[str, Any]:
        return self._call("GET", "/me")

    def catalog(self, kind: str = "modules", **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        params.setdefault("per_page", 200)
        return self._call("GET", f"/catalog/{kind}", params=params)["items"]

    def item(self, item_id: str, kind: str = "modules") -> dict[str, Any]:
        return self._call("GET", f"/catalog/{kind}/{item_id}")

    def deploy_form(self, item_id: str, purpose: str = "inference") -> dict[str, Any]:
        return self._call("GET", f"/catalog/modules/{item_id}/config", params={"purpose": purpose})

    def publish(
        self,
        item_id: str,
        *,
        package_path: str | None = None,
        git_url: str | None = None,
        git_ref: str | None = None,
        metadata_yaml: str | None = None,
        metadata: dict[str, Any] | None = None,
        docker_image: str | None = None,
        visibility: str = "private",
        lineage: dict[str, Any] | None = None,
        kind: str = "modules",
    ) -> dict[str, Any]:
        """Publish a module from a folder of your storage (``package_path``) or a git repository to the marketplace.

        Its ``ai4-metadata.yml`` is the metadata unless ``metadata_yaml`` / ``metadata`` are given;
        ``visibility``: private (you), vo (your VO) or, for admins, public.
        """
        body = {
            "id": item_id,
            "package_path": package_path,
            "git_url": git_url,
            "git_ref": git_ref,
            "metadata_yaml": metadata_yaml,
            "metadata": metadata,
            "docker_image": docker_image,
            "visibility": visibility,
            "lineage": lineage,
        }
        return self._call("POST", f"/catalog/{kind}", json={k: v for k, v in body.items() if v is not None})

    def withdraw(self, item_id: str, kind: str = "modules") -> dict[str, Any]:
        """Withdraw one of your publications from the marketplace."""
        return self._call("DELETE", f"/catalog/{kind}/{item_id}")

    # -- deployments ------------------------------------------------------------------
    def deployments(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/deployments", params={"kind": kind} if kind else {})

    def deployment(self, dep_id: str) -> dict[str, Any]:
        return self._call("GET", f"/deployments/{dep_id}")

    def deploy(
        self,
        item_id: str,
        *,
        title: str = "",
        weights: str | None = None,
        wait: bool = True,
        timeout: float = 300,
        secrets: list[str] | None = None,
        secrets_as: str = "env",
        **hardware: Any,
    ) -> dict[str, Any]:
        """Start an inference deployment of a module; by default wait until it is running.

        ``secrets``: names of your secrets the server gets, as variables (``secrets_as="env"``) or files.
        """
        body = {
            "kind": "module",
            "item": item_id,
            "title": title,
            "hardware": hardware,
            "weights": weights,
            **_secrets_fields(secrets, secrets_as),
        }
        dep = self._call("POST", "/deployments", json=body)
        return self.wait(dep["id"], "running", timeout) if wait else dep

    def deploy_serverless(self, item_id: str, *, title: str = "") -> dict[str, Any]:
        """Deploy a module as an OSCAR service (serverless inference); running when this returns."""
        return self._call("POST", "/deployments", json={"kind": "serverless", "item": item_id, "title": title})

    def pipeline(self, steps: list[dict[str, Any]], *, title: str = "") -> dict[str, Any]:
        """Chain deployments: ``steps`` = ``[{deployment, output: json|file, input_field}, ...]``.

        Run it with ``predict(pipeline_id, {"file": path})``: the answer has the final
        predictions and each step's output and time.
        """
        return self._call("POST", "/deployments", json={"kind": "pipeline", "title": title, "steps": steps})

    def wait(self, dep_id: str, status: str = "running", timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            dep = self.deployment(dep_id)
            if dep["status"] == status:
                return dep
            if dep["status"] in ("failed", "stopped", "cancelled", "succeeded"):
                raise ApiError(409, f"deployment {dep_id} is {dep['status']}: {dep['status_reason']}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"deployment {dep_id} still {dep['status']} after {timeout:g}s")
            time.sleep(0.5)

    def predict(self, dep_id: str, files: Mapping[str, str | Path] | None = None, **fields: Any) -> Any:
        """Predict with a deployment: ``files`` maps field names to local paths, the rest are fields."""
        return self._send_predict(f"/deployments/{dep_id}/predict", files, fields)

    def try_module(self, item_id: str, files: Mapping[str, str | Path] | None = None, **fields: Any) -> Any:
        """One prediction without a deployment (the marketplace's "try me")."""
        return self._send_predict(f"/catalog/modules/{item_id}/try", files, fields, form=True)

    def _send_predict(
        self, path: str, files: Mapping[str, str | Path] | None, fields: dict[str, Any], form: bool = False
    ) -> Any:
        if not files and not form:
            return self._call("POST", path, json=fields)
        if not files:  # a form without files: urlencoded fields
            return self._call("POST", path, data={k: str(v) for k, v in fields.items()})
        opened = {name: (Path(p).name, Path(p).read_bytes()) for name, p in files.items()}
        data = {k: str(v) for k, v in fields.items()}
        return self._call("POST", path, files=opened, data=data)

    def train(
        self,
        item_id: str,
        *,
        dataset: str | None = None,
        init_weights: str | None = None,
        title: str = "",
        wait: bool = False,
        timeout: float = 3600,
        hardware: dict[str, Any] | None = None,
        train_args: dict[str, Any] | None = None,
        secrets: list[str] | None = None,
        secrets_as: str = "env",
        workers: int = 1,
        **args: Any,
    ) -> dict[str, Any]:
        """Start a training of a module on ``dataset`` (a path in your storage) with its train arguments.

        The arguments are keywords (``epochs=3``), or ``train_args``, which may hold any name, also one of
        this method's own (``timeout``, ``title``). ``secrets``: names of your secrets the training gets.
        ``workers``: processes of a data-parallel training (torch.distributed), each running the module's train.
        """
        args = {**args, **(train_args or {})}
        body = {
            "kind": "training",
            "item": item_id,
            "dataset": dataset,
            "init_weights": init_weights,
            "title": title,
            "args": args,
            "hardware": hardware or {},
            "workers": workers,
            **_secrets_fields(secrets, secrets_as),
        }
        dep = self._call("POST", "/deployments", json=body)
        return self.wait_ended(dep, timeout) if wait else dep

    def metrics(self, dep_id: str) -> dict[str, list[dict[str, float]]]:
        """Per-step metric histories of a training (live while it runs)."""
        return self._call("GET", f"/deployments/{dep_id}/metrics")["metrics"]

    def follow_logs(self, dep_id: str) -> Any:
        """Yield log lines of a deployment as they come, until it ends."""
        with self.http.stream("GET", f"/deployments/{dep_id}/logs", params={"follow": 1}, timeout=None) as r:
            if r.status_code >= 400:
                raise ApiError(r.status_code, f"{r.status_code}: {r.read().decode()}")
            event = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    if event == "end":
                        return
                    yield line.removeprefix("data: ")

    def stop(self, dep_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/deployments/{dep_id}")

    # -- Flower (federated learning tool) ---------------------------------------------------
    def start_flower(
        self, *, title: str = "", wait: bool = True, timeout: float = 300, **config: Any
    ) -> dict[str, Any]:
        """Start a Flower server (``rounds=``, ``strategy=``, ... as in the tool's config); wait until it listens."""
        dep = self._call(
            "POST", "/deployments", json={"kind": "tool", "item": "ai4lab-flower", "title": title, "config": config}
        )
        return self.wait(dep["id"], "running", timeout) if wait else dep

    def flower(self, dep_id: str) -> dict[str, Any]:
        """Address, per-round aggregated metrics, connected clients, MLflow run and model of a Flower server."""
        return self._call("GET", f"/deployments/{dep_id}/flower")

    def flower_token(self, dep_id: str, rotate: bool = False) -> dict[str, Any]:
        """The token clients join with (and a snippet); ``rotate=True`` replaces it (the old one is refused)."""
        return self._call("POST" if rotate else "GET", f"/deployments/{dep_id}/flower/token")

    def logs(self, dep_id: str, tail: int | None = None) -> str:
        data = self._call("GET", f"/deployments/{dep_id}/logs", params={"tail": tail} if tail else {})
        return data.decode() if isinstance(data, bytes) else str(data)

    # -- datasets ---------------------------------------------------------------------
    def datasets(self) -> list[dict[str, Any]]:
        """My datasets: the folders under ``datasets/`` of my storage, each with its card (where it came from)."""
        return self._call("GET", "/datasets")

    def import_dataset(
        self,
        source: str,
        *,
        name: str | None = None,
        replace: bool = False,
        sha256: str | None = None,
        md5: str | None = None,
        wait: bool = False,
        timeout: float = 3600,
    ) -> dict[str, Any]:
        """Import a dataset by Zenodo DOI, Zenodo record URL or HTTPS URL into ``datasets/<name>/``.

        Returns the import (a deployment of kind ``dataset``: its ``progress`` has bytes and files); with
        ``wait=True`` once it ended (``succeeded``, or ``failed`` with the reason).
        """
        body = {"source": source, "name": name, "replace": replace, "sha256": sha256, "md5": md5}
        dep = self._call("POST", "/datasets", json={k: v for k, v in body.items() if v is not None})
        return self.wait_ended(dep, timeout) if wait else dep

    def wait_ended(self, dep: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
        """The deployment ``dep`` once it is no longer queued, starting or running (jobs: trainings, imports)."""
        deadline = time.monotonic() + timeout
        while dep["status"] in ACTIVE_STATUSES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dep['kind']} {dep['id']} still {dep['status']} after {timeout:g}s")
            time.sleep(0.5)
            dep = self.deployment(dep["id"])
        return dep

    # -- storage ----------------------------------------------------------------------
    def ls(self, path: str = "") -> list[dict[str, Any]]:
        """The entries of a folder of my storage (a file: its own entry, without reading it)."""
        with self._stream("GET", _storage(path)) as r:
            if r.headers.get("content-type", "").startswith("application/json"):
                return json.loads(r.read())["content"]
        parent, _, name = path.strip("/").rpartition("/")
        return [e for e in self.ls(parent) if e["name"] == name]

    def upload(self, local: str | Path, path: str, progress: Callable[[int], object] | None = None) -> dict[str, Any]:
        """Upload a file, streamed (``progress`` is called with the bytes sent of each part)."""
        local = Path(local)

        def parts() -> Iterator[bytes]:
            with local.open("rb") as f:
                while data := f.read(CHUNK):
                    yield data
                    if progress:
                        progress(len(data))

        size = local.stat().st_size
        return self._call("PUT", _storage(path), content=parts(), headers={"Content-Length": str(size)})

    def download(self, path: str) -> bytes:
        return self._call("GET", _storage(path))

    def get(self, path: str, local: str | Path, progress: Callable[[int, int], object] | None = None) -> Path:
        """Download a file to ``local``, streamed; a failed download leaves no partial file there.

        ``progress`` is called with the bytes received of each part and the file's size.
        """
        local = Path(local)
        tmp = local.with_name(f".{local.name}.part")
        try:
            with self._stream("GET", _storage(path)) as r, tmp.open("wb") as f:
                if r.headers.get("content-type", "").startswith("application/json"):
                    raise ApiError(409, f"{path!r} is a folder: download its files one by one")
                size = int(r.headers.get("content-length") or 0)
                for data in r.iter_bytes(CHUNK):
                    f.write(data)
                    if progress:
                        progress(len(data), size)
            tmp.replace(local)
        finally:
            tmp.unlink(missing_ok=True)
        return local

    def mkdir(self, path: str) -> dict[str, Any]:
        return self._call("POST", _storage(path))[0]

    def move(self, path: str, to: str, overwrite: bool = False) -> dict[str, Any]:
        return self._call("PATCH", _storage(path), json={"to": to, "overwrite": overwrite})

    def storage_where(self) -> dict[str, Any]:
        """Where my storage is: the platform's, or my own server (never its password)."""
        return self._call("GET", "/me/storage")

    def connect_storage(
        self, type: str, url: str, username: str = "", password: str = "", **more: Any
    ) -> dict[str, Any]:
        """Use my own S3 bucket (``url`` s3://bucket, ``endpoint_url``) or WebDAV folder (Nextcloud) as my storage."""
        body = {"type": type, "url": url, "username": username, "password": password, **more}
        return self._call("PUT", "/me/storage", json=body)

    def disconnect_storage(self) -> dict[str, Any]:
        """Back to the platform's storage (what was on my own server stays there)."""
        return self._call("DELETE", "/me/storage")

    def rm(self, path: str) -> dict[str, Any]:
        """Delete a file or a folder with everything in it."""
        return self._call("DELETE", _storage(path))

    # -- secrets ----------------------------------------------------------------------
    def secrets(self) -> list[dict[str, Any]]:
        """My secrets: name, created_at, updated_at (values are never returned)."""
        return self._call("GET", "/secrets")

    def set_secret(self, name: str, value: str, *, replace: bool = False) -> dict[str, Any]:
        """Store a secret; an existing name is refused (409) unless ``replace``."""
        if replace:
            return self._call("PUT", f"/secrets/{quote(name, safe='')}", json={"value": value})
        return self._call("POST", "/secrets", json={"name": name, "value": value})

    def delete_secret(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/secrets/{quote(name, safe='')}")
