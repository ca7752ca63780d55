"""MLflow for logged-in users: a hub-managed service that runs ``mlflow server`` on
loopback and forwards authenticated requests to it.

MLflow has no notion of JupyterHub users, so the gateway is what makes the
tracking server "reachable for logged-in users" only: clients send their hub
token as ``MLFLOW_TRACKING_TOKEN`` (a Bearer header), browsers log in through
the hub's OAuth flow.
"""

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from ai4lab.api.auth import XSRF_COOKIE, HubAuthenticator
from ai4lab.backends.local import kill_tree
from ai4lab.core.settings import Settings, get_settings

#: MLflow's UI adds a header of each cookie with this prefix to its requests (``getDefaultHeaders``).
MLFLOW_XSRF_COOKIE = "mlflow-request-header-X-XSRFToken"

HOP_HEADERS = {
    "host",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "cookie",
    "content-length",
}


def mlflow_command(settings: Settings, prefix: str) -> list[str]:
    state = settings.state
    store = settings.mlflow_backend_store_uri or f"sqlite:///{state / 'mlflow.sqlite'}"
    artifacts = settings.mlflow_artifacts_destination or str(state / "mlflow-artifacts")
    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.mlflow_backend_port),
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
        "--static-prefix",
        prefix,
        "--workers",
        "1",
    ]


def stop_mlflow(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop MLflow's server gracefully (SIGTERM), then its ``mlflow server`` wrapper at once.

    Why the wrapper is killed: once the server it waits for has exited, it has
    nothing left to do but tear down MLflow's imports, which takes over a second
    of every platform stop.
    """
    try:
        servers = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        servers = []
    for p in servers:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(servers, timeout=timeout)
    if servers and not alive:
        proc.kill()
    kill_tree(proc.pid, None, timeout)  # whatever is left (no server found: the wrapper itself)
    proc.wait()


def create_app(settings: Settings | None = None, authenticator: HubAuthenticator | None = None) -> FastAPI:
    settings = settings or get_settings()
    # MLflow's UI sends every cookie named mlflow-request-header-<Name> as the header <Name>: its
    # writes (runs/search is a POST) then carry the XSRF token that cookie-authenticated writes need
    auth = authenticator or HubAuthenticator(
        allow_token_in_url=settings.allow_token_in_url, xsrf_cookies=(XSRF_COOKIE, MLFLOW_XSRF_COOKIE)
    )
    prefix = auth.prefix
    upstream = f"http://127.0.0.1:{settings.mlflow_backend_port}"
    state: dict[str, object] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log = await asyncio.to_thread(open, settings.logs_dir / "mlflow.log", "ab")
        # no job runner: its eight worker processes (GenAI jobs and trace rollups, which the platform does not
        # use) cost memory and CPU beside users' sessions, and seconds at every start and stop
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # fmt: skip
        proc = await asyncio.to_thread(
            subprocess.Popen,
            mlflow_command(settings, prefix),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        state["client"] = httpx.AsyncClient(base_url=upstream, timeout=300)
        try:
            yield
        finally:
            await state["client"].aclose()  # type: ignore[attr-defined]
            await asyncio.to_thread(stop_mlflow, proc)
            log.close()

    app = FastAPI(title="ai4lab MLflow gateway", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    auth.install(app)

    @app.get(f"{prefix}/gateway-health", include_in_schema=False)
    async def health() -> dict[str, str]:
        client: httpx.AsyncClient = state["client"]  # type: ignore[assignment]
        try:
            r = await client.get(f"{prefix}/health")
            ok = r.status_code == 200
        except httpx.TransportError:
            ok = False
        return {"gateway": "ok", "mlflow": "ok" if ok else "starting"}

    @app.api_route(f"{prefix}/{{path:path}}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def forward(path: str, request: Request) -> Response:
        user = await auth.user_for(request)
        client: httpx.AsyncClient = state["client"]  # type: ignore[assignment]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers["X-Forwarded-User"] = user.name
        req = client.build_request(
            request.method,
            f"{prefix}/{path}",
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        try:
            r = await client.send(req, stream=True)
        except httpx.TransportError:
            return JSONResponse({"detail": "MLflow is starting, retry in a few seconds"}, status_code=503)
        out_headers = {k: v for k, v in r.headers.items() if k.lower() not in HOP_HEADERS | {"content-encoding"}}
        return StreamingResponse(r.aiter_bytes(), status_code=r.status_code, headers=out_headers, background=_closer(r))

    return app


def _closer(r: httpx.Response) -> BackgroundTask:
    return BackgroundTask(r.aclose)


def main() -> None:
    import uvicorn

    settings = get_settings()
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("AI4LAB_MLFLOW_PORT", settings.mlflow_port))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
