"""A small OSCAR cluster stand-in that checks every request against the OSCAR spec and really runs services.

What it checks (400 with the reason otherwise, so tests see it): the path and
method exist in ``oscar-api-v2.yaml``, the body matches the operation's schema
(closed object schemas, see ``oscar_spec``), service names are DNS-safe, and
the credentials fit the operation's security (basic auth or bearer token on
``/system/*``; the service's token or the OIDC token on ``/run`` and ``/job``).

What it does, as OSCAR does: keeps services (with a generated token), and for
``POST /run/{service}`` decodes the base64 (or JSON) body into
``$INPUT_FILE_PATH``, runs the service's ``script`` with bash, and answers
with the single file left in ``$TMP_OUTPUT_DIR`` base64-encoded (several:
a zip; none: the script's output). ``POST /job/{service}`` does the same in
the background and records a job whose logs ``/system/logs`` serves.

Failures on demand: ``faults[(method, path)] = (status, text)`` makes the next
such request (checked against the spec and the credentials first) answer
``status`` with ``text``, once; for the errors a real cluster gives and this one
never would (a 500 of its own, a conflict between two creations).

The container is the one thing imitated: instead of pulling the service's
image, the script runs with the cached environment of the catalog module that
image was built from (``images`` maps image -> module folder, built with
``ai4lab.core.envs.ensure_env``) first on PATH, so the module's real ``deepaas-cli``
runs the generated script.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import secrets
import subprocess
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ai4lab.core.envs import ensure_env, env_repo
from tests.fakes import oscar_spec
from tests.fakes.nomad import ThreadedServer

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Invocation:
    status: int
    body: bytes
    stdout: str
    stderr: str


@dataclass
class FakeOscar:
    """State of the fake cluster; ``app`` serves it."""

    images: dict[str, Path] = field(default_factory=dict)
    user: str = "oscar"
    password: str = "oscar-password"
    oidc_token: str | None = None
    envs_dir: Path | None = None
    model_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "ai4lab" / "models")
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status)
    refused: list[str] = field(default_factory=list)  # reasons of 400s, for tests
    faults: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)  # one-shot answers, for tests
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.app = self._make_app()

    # -- the container stand-in -------------------------------------------------------
    def execute(self, service: dict[str, Any], input_bytes: bytes) -> Invocation:
        """Run the service's script once on ``input_bytes``, as FaaS Supervisor does in the service's pod."""
        image = service["image"]
        folder = self.images.get(image) or self.images.get(image.rsplit(":", 1)[0])
        if folder is None:
            return Invocation(500, b"", "", f"image {image} cannot be pulled (unknown to the fake cluster)")
        env_dir = ensure_env(folder, self.envs_dir)
        with tempfile.TemporaryDirectory(prefix="fake-oscar-") as tmp:
            work = Path(tmp)
            (work / "input").mkdir()
            (work / "output").mkdir()
            input_file = work / "input" / "event-file"
            input_file.write_bytes(input_bytes)
            (work / "script.sh").write_text(service["script"])
            env = {
                "PATH": f"{env_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
                "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
                "AI4LAB_MODEL_DIR": str(self.model_dir),  # the image's baked-in model
                **(service.get("environment") or {}).get("variables", {}),
                "INPUT_FILE_PATH": str(input_file), "TMP_INPUT_DIR": str(work / "input"),
                "TMP_OUTPUT_DIR": str(work / "output"),
            }
            # in the repository, as an AI4OS image's WORKDIR is (deepaas-cli reads the module's files from there)
            proc = subprocess.run(["bash", str(work / "script.sh")], cwd=env_repo(env_dir), env=env,
                                  capture_output=True, text=True, timeout=300)
            outputs = sorted(p for p in (work / "output").rglob("*") if p.is_file())
            if proc.returncode != 0:
                return Invocation(500, b"", proc.stdout, proc.stderr)
            if len(outputs) == 1:
                body = base64.b64encode(outputs[0].read_bytes())
            elif outputs:
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w") as z:
                    for p in outputs:
                        z.write(p, p.relative_to(work / "output").as_posix())
                body = base64.b64encode(buf.getvalue())
            else:
                body = proc.stdout.encode()
            return Invocation(200, body, proc.stdout, proc.stderr)

    @staticmethod
    def decode_event(body: bytes) -> bytes | None:
        """FaaS Supervisor takes a base64 body (decoded) or a JSON one (as is); None for neither."""
        text = body.strip()
        try:
            decoded = base64.b64decode(text, validate=True)
            if decoded:
                return decoded
        except (binascii.Error, ValueError):
            pass
        try:
            json.loads(text)
            return body
        except ValueError:
            return None

    # -- HTTP -------------------------------------------------------------------------
    def _authorized(self, request: Request, schemes: list[str]) -> bool:
        auth = request.headers.get("authorization", "")
        if "basicAuth" in schemes and auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return user == self.user and pw == self.password
        if "token" in schemes and auth.startswith("Bearer "):
            token = auth[7:]
            if self.oidc_token and token == self.oidc_token:
                return True
            m = re.match(r"^/(run|job)/([^/]+)$", request.url.path)
            svc = self.services.get(m.group(2)) if m else None
            return svc is not None and token == svc["token"]
        return False

    def _make_app(self) -> FastAPI:
        app = FastAPI()
        fake = self

        def reply(schema: str | dict[str, Any], body: Any, status: int = 200) -> JSONResponse:
            errs = oscar_spec.errors(schema, body)
            assert not errs, f"the fake answered outside the spec: {errs}"
            return JSONResponse(body, status_code=status)

        @app.middleware("http")
        async def _check(request: Request, call_next: Any) -> Response:
            body = await request.body()
            reason = oscar_spec.check_request(request.method, request.url.path,
                                              request.headers.get("content-type", ""), body)
            if reason:
                fake.refused.append(reason)
                response: Response = PlainTextResponse(reason, status_code=400)
            else:
                schemes = oscar_spec.security(request.method, request.url.path)
                if schemes and not fake._authorized(request, schemes):
                    response = PlainTextResponse("Unauthorized", status_code=401)
                elif (request.method, request.url.path) in fake.faults:
                    status, text = fake.faults.pop((request.method, request.url.path))
                    response = PlainTextResponse(text, status_code=status)
                else:
                    response = await call_next(request)
            fake.requests.append((request.method, request.url.path, response.status_code))
            return response

        @app.get("/health")
        async def health() -> Response:
            return PlainTextResponse("Ok")

        @app.get("/system/info")
        async def info() -> Response:
            return reply("Info", {"version": "v3.6.0-fake", "architecture": "amd64",
                                  "serverless_backend": {"name": "Knative", "version": "fake"}})

        @app.get("/system/config")
        async def config() -> Response:
            return reply("ConfigForUser", {"config": {"name": "oscar", "namespace": "oscar",
                                                      "services_namespace": "oscar-svc",
                                                      "serverless_backend": "knative"}})

        @app.get("/system/services")
        async def list_services() -> Response:
            return reply({"type": "array", "items": {"$ref": "#/components/schemas/Service"}},
                         list(fake.services.values()))

        @app.api_route("/system/services", methods=["POST", "PUT"])
        async def put_service(request: Request) -> Response:
            svc = json.loads(await request.body())
            name = svc["name"]
            if not NAME_RE.match(name) or len(name) > 63:
                reason = f"Invalid service name {name!r}: lowercase letters, digits and '-', at most 63"
                fake.refused.append(reason)
                return PlainTextResponse(reason, status_code=400)
            with fake.lock:
                exists = name in fake.services
                if request.method == "POST" and exists:
                    return PlainTextResponse("A service with the provided name already exists", status_code=409)
                if request.method == "PUT" and not exists:
                    return PlainTextResponse("The service does not exist", status_code=404)
                token = fake.services[name]["token"] if exists else secrets.token_hex(32)
                fake.services[name] = {**svc, "token": token, "owner": fake.user}
                fake.jobs.setdefault(name, {})
            return Response(status_code=201 if request.method == "POST" else 204)

        @app.get("/system/services/{name}")
        async def get_service(name: str) -> Response:
            svc = fake.services.get(name)
            if svc is None:
                return PlainTextResponse("The service does not exist", status_code=404)
            return reply("Service", svc)

        @app.delete("/system/services/{name}")
        async def delete_service(name: str) -> Response:
            with fake.lock:
                if fake.services.pop(name, None) is None:
                    return PlainTextResponse("The service does not exist", status_code=404)
                fake.jobs.pop(name, None)
            return Response(status_code=204)

        async def invocation(name: str, request: Request) -> tuple[dict[str, Any], bytes] | Response:
            """The service and the decoded event of a /run or /job call, or the refusal."""
            svc = fake.services.get(name)
            if svc is None:
                return PlainTextResponse("The service does not exist", status_code=404)
            event = fake.decode_event(await request.body())
            if event is None:
                return PlainTextResponse("the body is neither base64 nor JSON", status_code=400)
            return svc, event

        @app.post("/run/{name}")
        async def run(name: str, request: Request) -> Response:
            import asyncio

            found = await invocation(name, request)
            if isinstance(found, Response):
                return found
            out = await asyncio.to_thread(fake.execute, *found)
            if out.status != 200:
                return PlainTextResponse(out.stderr or out.stdout, status_code=out.status)
            return Response(out.body, media_type="text/plain")

        @app.post("/job/{name}")
        async def job(name: str, request: Request) -> Response:
            found = await invocation(name, request)
            if isinstance(found, Response):
                return found
            job_name = f"{name}-{secrets.token_hex(4)}"
            record = {"status": "Running", "creation_time": _now(), "start_time": _now(), "logs": ""}
            fake.jobs.setdefault(name, {})[job_name] = record

            def work() -> None:
                out = fake.execute(*found)
                record.update(status="Succeeded" if out.status == 200 else "Failed", finish_time=_now(),
                              logs=out.stdout + out.stderr)

            threading.Thread(target=work, daemon=True).start()
            return Response(status_code=201)

        @app.get("/system/logs/{name}")
        async def list_jobs(name: str) -> Response:
            if name not in fake.services:
                return PlainTextResponse("The service does not exist", status_code=404)
            jobs = {j: {k: v for k, v in r.items() if k != "logs"} for j, r in fake.jobs.get(name, {}).items()}
            return reply("JobsResponse", {"jobs": jobs})

        @app.get("/system/logs/{name}/{job_name}")
        async def job_logs(name: str, job_name: str) -> Response:
            record = fake.jobs.get(name, {}).get(job_name)
            if record is None:
                return PlainTextResponse("The job does not exist", status_code=404)
            return PlainTextResponse(record["logs"])

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
        async def other(path: str) -> Response:
            return PlainTextResponse(f"/{path} is in the spec but not served by the fake", status_code=501)

        return app


def bundled_images() -> dict[str, Path]:
    """Image -> module folder for the bundled catalog's modules (what their Dockerfiles build)."""
    from ai4lab.catalog.metadata import load_folder
    from ai4lab.core.settings import bundled_catalog_path

    out = {}
    for folder in sorted((bundled_catalog_path() / "modules").iterdir()):
        if (folder / "ai4-metadata.yml").is_file():
            item = load_folder(folder, kind="module", source="bundled")
            if item.run.docker_image:
                out[item.run.docker_image] = folder
    return out


class FakeOscarServer(ThreadedServer):
    """Runs a ``FakeOscar`` with uvicorn in a thread on a free local port (as the fake Nomad does)."""

    def __init__(self, fake: FakeOscar) -> None:
        super().__init__(fake.app)
        self.fake = fake

    def settings(self) -> dict[str, str]:
        """Platform settings (``oscar_*``) pointing at this fake."""
        return {"oscar_endpoint": self.address, "oscar_user": self.fake.user,
                "oscar_password": self.fake.password, "oscar_cluster_id": "fake-oscar"}

    def __enter__(self) -> FakeOscarServer:
        return super().__enter__()  # type: ignore[no-any-return]
