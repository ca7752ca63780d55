"""Handlers under ``<base_url>/ai4lab/``: a forwarder to the platform API, the session's
configuration for the panels, and *Open in IDE* (unpack a module into the workspace).

Every answer that is an error carries ``{"detail": "<one readable sentence>", "status": N}``
so the panels can show it as is: the platform API's own reasons pass through, anything
else (a proxy's HTML page, a refused connection, FastAPI's validation lists) is turned
into a sentence here.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.iostream import StreamClosedError
from traitlets import Float, Unicode, default
from traitlets.config import Configurable

# request/response headers that describe one hop, not the message (RFC 9110 §7.6.1)
HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length", "content-encoding", "host"}
PASSED_REQUEST_HEADERS = ("content-type", "accept")
PASSED_RESPONSE_HEADERS = ("content-type", "content-disposition", "cache-control")


class Ai4labConfig(Configurable):
    """Where the platform API is and which token to use; the spawner sets both in the environment."""

    api_url = Unicode(config=True, help="The platform API (default: $AI4LAB_API_URL).")
    api_token = Unicode(config=True, help="Token sent to the platform API (default: $AI4LAB_API_TOKEN).")
    mlflow_url = Unicode(config=True, help="MLflow of the platform, for run links (default: $MLFLOW_TRACKING_URI).")
    timeout = Float(300.0, config=True, help="Seconds to wait for the platform API (predictions may be slow).")

    @default("api_url")
    def _api_url(self) -> str:
        return os.environ.get("AI4LAB_API_URL", "").rstrip("/")

    @default("api_token")
    def _api_token(self) -> str:
        return os.environ.get("AI4LAB_API_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN", "")

    @default("mlflow_url")
    def _mlflow_url(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI", "").rstrip("/")


def readable_error(status: int, body: bytes, content_type: str) -> str:
    """One sentence for an error answer of the platform API, whatever its shape."""
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        detail = None
        if isinstance(data, dict):  # the platform's {"detail"}, or a module's own {"message"} (DEEPaaS)
            detail = next((data[k] for k in ("detail", "message", "reason") if data.get(k)), None)
        if isinstance(detail, str) and detail:
            return re.sub(r"^\d{3}: ", "", detail)
        if isinstance(detail, list):  # FastAPI's request validation: [{loc, msg, type}, ...]
            parts = []
            for err in detail:
                if isinstance(err, dict):
                    loc = ".".join(str(x) for x in err.get("loc", [])[1:]) or "request"
                    parts.append(f"{loc}: {err.get('msg', 'invalid')}")
            if parts:
                return "; ".join(parts)
    text = re.sub(r"<[^>]+>", " ", body.decode("utf-8", "replace"))
    text = " ".join(text.split())[:200]
    if m := re.match(r"^\d{3}: (.+)", text):  # aiohttp's plain "400: reason" (DEEPaaS modules)
        return m.group(1)
    return f"the platform API answered {status}" + (f": {text}" if text else "")


class Ai4labHandler(APIHandler):
    """Base: the configuration, a shared HTTP client and JSON errors with a ``detail``."""

    @property
    def conf(self) -> Ai4labConfig:
        return self.settings["ai4lab"]

    @property
    def http(self) -> httpx.AsyncClient:
        return self.settings["ai4lab_http"]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            reason = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"detail": reason, "status": status_code}))

    def fail(self, status: int, detail: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"detail": detail, "status": status}))

    def platform_url(self, path: str) -> str:
        if not self.conf.api_url:
            raise web.HTTPError(503, "this session has no platform API (AI4LAB_API_URL is not set): "
                                     "start it from the ai4lab hub")
        return f"{self.conf.api_url}/{path.lstrip('/')}"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.conf.api_token}"} if self.conf.api_token else {}


class ForwardHandler(Ai4labHandler):
    """``/ai4lab/api/<path>`` → ``$AI4LAB_API_URL/<path>`` with the session's token."""

    @web.authenticated
    async def get(self, path: str) -> None:
        await self.forward("GET", path)

    @web.authenticated
    async def post(self, path: str) -> None:
        await self.forward("POST", path)

    @web.authenticated
    async def put(self, path: str) -> None:
        await self.forward("PUT", path)

    @web.authenticated
    async def delete(self, path: str) -> None:
        await self.forward("DELETE", path)

    async def forward(self, method: str, path: str) -> None:
        url = self.platform_url(quote(path, safe="/"))
        headers = self.auth_headers()
        for name in PASSED_REQUEST_HEADERS:
            if value := self.request.headers.get(name):
                headers[name] = value
        params = [(k, v.decode()) for k, vs in self.request.query_arguments.items() for v in vs if k != "_xsrf"]
        request = self.http.build_request(method, url, params=params, headers=headers,
                                          content=self.request.body if method in ("POST", "PUT") else None)
        try:
            upstream = await self.http.send(request, stream=True)
        except httpx.TimeoutException:
            return self.fail(504, f"the platform API did not answer within {self.conf.timeout:g} s")
        except httpx.TransportError as e:
            return self.fail(502, f"the platform API at {self.conf.api_url} cannot be reached ({e.__class__.__name__})")
        try:
            ctype = upstream.headers.get("content-type", "")
            if upstream.status_code >= 400:
                body = await upstream.aread()
                return self.fail(upstream.status_code, readable_error(upstream.status_code, body, ctype))
            self.set_status(upstream.status_code)
            for name in PASSED_RESPONSE_HEADERS:
                if value := upstream.headers.get(name):
                    self.set_header(name, value)
            if ctype.startswith("text/event-stream"):
                await self.stream(upstream)
            else:  # APIHandler.finish would call everything JSON: a module's PNG or zip keeps its type
                self.finish(await upstream.aread(), set_content_type=ctype or "application/octet-stream")
        finally:
            await upstream.aclose()

    async def stream(self, upstream: httpx.Response) -> None:
        """Server-sent events (live logs) pass through chunk by chunk until either side ends."""
        self.set_header("X-Accel-Buffering", "no")
        try:
            async for chunk in upstream.aiter_raw():
                self.write(chunk)
                await self.flush()
        except (StreamClosedError, httpx.TransportError):
            return
        self.finish()


class ConfigHandler(Ai4labHandler):
    """What the panels need to know about the session: is the platform there, MLflow, user."""

    @web.authenticated
    async def get(self) -> None:
        self.finish({
            "configured": bool(self.conf.api_url),
            "api_url": self.conf.api_url,
            "mlflow_url": self.conf.mlflow_url,
            "user": os.environ.get("JUPYTERHUB_USER", ""),
        })


class OpenInIdeHandler(Ai4labHandler):
    """Unpack a catalog module's package (from the platform) into a new workspace folder."""

    @web.authenticated
    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            return self.fail(400, "send JSON: {\"item\": \"<module id>\"}")
        item = str(body.get("item") or "")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,99}", item):
            return self.fail(400, "say which module to open: item=<catalog id>")
        root = Path(self.settings["server_root_dir"]).expanduser()
        target = root / str(body.get("folder") or item)
        if target.resolve().parent != root.resolve():
            return self.fail(400, "the folder must be a plain name inside your workspace")
        if target.exists():
            return self.fail(409, f"{target.name}/ already exists in your workspace: remove or rename it first")
        try:
            r = await self.http.get(self.platform_url(f"catalog/modules/{item}/package"),
                                    headers=self.auth_headers())
        except httpx.TransportError as e:
            return self.fail(502, f"the platform API at {self.conf.api_url} cannot be reached ({e.__class__.__name__})")
        if r.status_code >= 400:
            return self.fail(r.status_code, readable_error(r.status_code, r.content,
                                                           r.headers.get("content-type", "")))
        target.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
            try:
                safe_extract(tar, target)
            except ValueError as e:
                shutil.rmtree(target, ignore_errors=True)
                return self.fail(400, str(e))
        files = sorted(str(p.relative_to(root)) for p in target.rglob("*") if p.is_file())
        self.set_status(201)
        self.finish({"folder": target.name, "files": files})


def safe_extract(tar: tarfile.TarFile, target: Path) -> None:
    """Unpack only plain files and folders below ``target``: no absolute paths, '..', links or devices.

    Why not always ``filter="data"``: sessions may run on a Python 3.11 older than 3.11.4
    (Debian 12's), whose tarfile has no extraction filters.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, filter="data")
        return
    members = tar.getmembers()
    for m in members:
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
            raise ValueError(f"the package holds {m.name!r}, which may not be unpacked (absolute, '..' or a link)")
    tar.extractall(target, members=members)


def setup_handlers(server_app: Any) -> None:
    web_app = server_app.web_app
    conf = Ai4labConfig(parent=server_app)
    web_app.settings["ai4lab"] = conf
    web_app.settings["ai4lab_http"] = httpx.AsyncClient(timeout=httpx.Timeout(conf.timeout, connect=10))
    base = url_path_join(web_app.settings["base_url"], "ai4lab")
    web_app.add_handlers(".*$", [
        (url_path_join(base, "api", "(.*)"), ForwardHandler),
        (url_path_join(base, "config"), ConfigHandler),
        (url_path_join(base, "open-in-ide"), OpenInIdeHandler),
    ])
