"""A small fake CVAT server that checks requests against CVAT's OpenAPI schema.

``../shared/specs/cvat-api.yml`` (CVAT 2.26): every request must be a method and
path of the spec (404 otherwise), query parameters the operation requires must be
there and known ones only (400), JSON bodies are validated against the operation's
request schema (400), and the JSON answers against the response schema, so that
the fake cannot drift from the real API. Implemented: server about, session
login (``sessionid`` + ``csrftoken`` cookies, CSRF header checked on writes),
reading a task, the dataset export request (202 + ``rq_id``), the request status
and the download of the result (``GET /api/tasks/{id}/dataset?action=download``) (a zip in COCO 1.0 layout built from the task's
annotations).
"""

from __future__ import annotations

import copy
import io
import json
import re
import secrets
import zipfile
from urllib.parse import urlencode
from functools import lru_cache
from typing import Any

import jsonschema
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.fakes.nomad import ThreadedServer
from tests.fakes.nomad_spec import shared_dir

SPEC_URI = "urn:cvat-api"


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    return yaml.safe_load((shared_dir() / "specs" / "cvat-api.yml").read_text())


def _nullable(node: Any) -> None:
    """OpenAPI 3.0 ``nullable: true`` -> JSON schema ``type: [.., "null"]``."""
    if isinstance(node, dict):
        if node.pop("nullable", False):
            if "type" in node:
                node["type"] = [node["type"], "null"]
            else:
                node.update({"anyOf": [{k: node.pop(k) for k in list(node) if k not in ("description",)}, {"type": "null"}]})
        for v in list(node.values()):
            _nullable(v)
    elif isinstance(node, list):
        for v in node:
            _nullable(v)


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    doc = copy.deepcopy(spec())
    _nullable(doc["components"])
    return doc


def validate(schema: dict[str, Any], instance: Any) -> list[str]:
    registry = Registry().with_resource(SPEC_URI, Resource(contents=_document(), specification=DRAFT202012))
    ref = json.loads(json.dumps(schema).replace('"#/components', f'"{SPEC_URI}#/components'))
    v = jsonschema.Draft202012Validator(ref, registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in v.iter_errors(instance)]


@lru_cache(maxsize=1)
def _routes() -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in spec()["paths"]]


def operation(method: str, path: str) -> tuple[dict[str, Any] | None, str]:
    """The spec's operation for ``method path``, or None and why not."""
    for pattern, template in _routes():
        if pattern.match(path):
            op = spec()["paths"][template].get(method.lower())
            return (op, "") if op else (None, f"{method} is not allowed on {template} by the CVAT API spec")
    return None, f"{path} is not a path of the CVAT API spec"


class FakeCvat:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.tasks: dict[int, dict[str, Any]] = {}
        self.requests_seen: list[tuple[str, str, dict[str, str]]] = []
        self.rq: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, str] = {}  # sessionid -> csrftoken
        self.app = self._make_app()

    def add_task(self, task_id: int, name: str, labels: list[str], coco: dict[str, Any]) -> None:
        self.tasks[task_id] = {"name": name, "labels": labels, "coco": coco}

    def _make_app(self) -> FastAPI:
        app = FastAPI()
        fake = self

        def answer(op: dict[str, Any], status: int, body: Any, **kw: Any) -> JSONResponse:
            schema = op["responses"][str(status)]["content"]
            schema = next(iter(schema.values()))["schema"]
            errs = validate(schema, body)
            if errs:
                raise AssertionError("fake CVAT answer does not match the spec:\n" + "\n".join(errs))
            return JSONResponse(body, status_code=status, **kw)

        @app.middleware("http")
        async def _check(request: Request, call_next: Any) -> Response:
            q = dict(request.query_params)
            fake.requests_seen.append((request.method, request.url.path, q))
            op, why = operation(request.method, request.url.path)
            if op is None:
                return PlainTextResponse(why, status_code=404)
            params = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "query"}
            missing = [n for n, p in params.items() if p.get("required") and n not in q]
            unknown = [n for n in q if n not in params]
            if missing or unknown:
                return PlainTextResponse(f"query: missing {missing}, unknown {unknown}", status_code=400)
            body = op.get("requestBody")
            if body and request.method in ("POST", "PUT", "PATCH"):
                raw = await request.body()
                ctype = request.headers.get("content-type", "").split(";")[0]
                if ctype == "application/json" and "application/json" in body["content"]:
                    errs = validate(body["content"]["application/json"]["schema"], json.loads(raw or b"null"))
                    if errs:
                        return PlainTextResponse("request body does not match the spec:\n" + "\n".join(errs), 400)
                elif body.get("required"):
                    return PlainTextResponse(f"unsupported content type {ctype!r}", status_code=415)
            request.state.op = op
            if request.url.path not in ("/api/server/about", "/api/auth/login"):
                sid = request.cookies.get("sessionid")
                if sid not in fake.sessions:
                    return JSONResponse({"detail": "Authentication credentials were not provided."}, 401)
                # the spec: the token "can be sent as a cookie or as the X-CSRFTOKEN header"
                csrf = request.headers.get("X-CSRFTOKEN") or request.cookies.get("csrftoken")
                if request.method != "GET" and csrf != fake.sessions[sid]:
                    return JSONResponse({"detail": "CSRF Failed: CSRF token missing."}, 403)
            return await call_next(request)

        @app.get("/api/server/about")
        async def about(request: Request) -> Response:
            return answer(request.state.op, 200, {"name": "Computer Vision Annotation Tool",
                                                  "description": "fake CVAT", "version": "2.26.2"})

        @app.post("/api/auth/login")
        async def login(request: Request) -> Response:
            body = await request.json()
            if body.get("username") != fake.user or body.get("password") != fake.password:
                return JSONResponse({"non_field_errors": ["Unable to log in with provided credentials."]}, 400)
            sid, csrf = secrets.token_hex(16), secrets.token_hex(16)
            fake.sessions[sid] = csrf
            r = answer(request.state.op, 200, {"key": secrets.token_hex(20)})
            r.set_cookie("sessionid", sid)
            r.set_cookie("csrftoken", csrf)
            return r

        @app.post("/api/auth/logout")
        async def logout(request: Request) -> Response:
            fake.sessions.pop(request.cookies.get("sessionid", ""), None)
            return answer(request.state.op, 200, {"detail": "Successfully logged out."})

        @app.get("/api/tasks/{task_id}")
        async def task(request: Request, task_id: int) -> Response:
            t = fake.tasks.get(task_id)
            if t is None:
                return JSONResponse({"detail": "Not found."}, 404)
            base = str(request.base_url).rstrip("/")
            return answer(request.state.op, 200, {
                "url": f"{base}/api/tasks/{task_id}", "id": task_id, "name": t["name"], "project_id": None,
                "mode": "annotation", "owner": None, "assignee": None, "bug_tracker": "",
                "created_date": "2026-01-01T00:00:00Z", "updated_date": "2026-01-01T00:00:00Z",
                "overlap": None, "segment_size": 10, "status": "completed", "dimension": "2d", "subset": "",
                "organization": None, "target_storage": None, "source_storage": None,
                "jobs": {"count": 1, "completed": 1, "validation": 0, "url": f"{base}/api/jobs?task_id={task_id}"},
                "labels": {"url": f"{base}/api/labels?task_id={task_id}"}, "size": len(t["coco"].get("images", [])),
            })

        @app.post("/api/tasks/{task_id}/dataset/export")
        async def export(request: Request, task_id: int) -> Response:
            if task_id not in fake.tasks:
                return JSONResponse({"detail": "Not found."}, 404)
            rq_id = f"export:task-{task_id}-dataset-{secrets.token_hex(4)}"
            fake.rq[rq_id] = {"task": task_id, "format": request.query_params["format"],
                              "images": request.query_params.get("save_images", "").lower() == "true", "polls": 0}
            return answer(request.state.op, 202, {"rq_id": rq_id})

        @app.get("/api/requests/{rq_id}")
        async def req(request: Request, rq_id: str) -> Response:
            r = fake.rq.get(rq_id)
            if r is None:
                return JSONResponse({"detail": "Not found."}, 404)
            r["polls"] += 1
            done = r["polls"] > 1  # the first poll finds it still running
            base = str(request.base_url).rstrip("/")
            body: dict[str, Any] = {
                "id": rq_id, "status": "finished" if done else "started", "message": "",
                "operation": {"type": "export:dataset", "target": "task", "task_id": r["task"], "format": r["format"],
                              "project_id": None, "job_id": None, "function_id": None},
                "progress": 1.0 if done else 0.5, "created_date": "2026-01-01T00:00:00Z",
            }
            if done:  # CVAT 2.26's download URL of a prepared export
                query = urlencode({"action": "download", "format": r["format"]})
                body["result_url"] = f"{base}/api/tasks/{r['task']}/dataset?{query}"
            return answer(request.state.op, 200, body)

        @app.get("/api/tasks/{task_id}/dataset")
        async def download(request: Request, task_id: int) -> Response:
            fmt = request.query_params["format"]
            ready = [r for r in fake.rq.values() if r["task"] == task_id and r["format"] == fmt and r["polls"] > 1]
            if request.query_params.get("action") != "download" or not ready:
                return JSONResponse({"detail": "no prepared export: POST .../dataset/export first"}, 400)
            if fmt != "COCO 1.0":
                return JSONResponse({"detail": "fake CVAT exports COCO 1.0 only"}, 400)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr("annotations/instances_default.json", json.dumps(fake.tasks[task_id]["coco"]))
            return Response(buf.getvalue(), media_type="application/zip",
                            headers={"Content-Disposition": f'attachment; filename="task_{task_id}_coco.zip"'})

        return app


class FakeCvatServer(ThreadedServer):
    def __init__(self, fake: FakeCvat, port: int | None = None) -> None:
        super().__init__(fake.app, port)
        self.fake = fake
