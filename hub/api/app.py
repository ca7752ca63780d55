"""The platform API: a JupyterHub-managed FastAPI service at ``/services/ai4lab/``.

``create_app`` only wires: one router per URL prefix (``accounts``: ``/me``,
``/users``; ``deployments`` and ``deployment_tools``: ``/deployments``;
``catalog``; ``storage``; ``datasets``; ``secrets``; ``admin``; ``pages``: ``/marketplace``), the
deployment registry behind them, the background loops, and the one error
handler. Owners see and stop only their own deployments and storage; admins
see all. Other users' things answer 404, so that their existence is not revealed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ai4lab import __version__
from ai4lab.api import (
    accounts,
    admin,
    catalog,
    datasets,
    deployment_tools,
    deployments,
    pages,
    secrets,
    settings_pages,
    storage,
)
from ai4lab.api.auth import HubAuthenticator
from ai4lab.api.context import ApiContext
from ai4lab.core import deployments as deps
from ai4lab.core.errors import PlatformError
from ai4lab.core.process_tokens import revoke_ended_tokens
from ai4lab.core.secret_box import box_for
from ai4lab.core.settings import Settings, get_settings
from ai4lab.deploy.lifecycle import Lifecycle, Platform
from ai4lab.deploy.registry import Registry

log = logging.getLogger("ai4lab.api")


def create_app(
    settings: Settings | None = None,
    authenticator: HubAuthenticator | None = None,
    lifecycles: list[type[Lifecycle]] | None = None,
) -> FastAPI:
    """The API of one platform. ``lifecycles``: the deployment kinds (default: ``registry.LIFECYCLES``)."""
    settings = settings or get_settings()
    auth = authenticator or HubAuthenticator(allow_token_in_url=settings.allow_token_in_url)
    platform = Platform.for_settings(settings)
    registry = Registry(platform, lifecycles)
    api = ApiContext(settings=settings, auth=auth, catalog=platform.catalog, platform=platform, registry=registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        box = box_for(settings.state)
        deps.seal_secrets(settings.db_url, box.seal, box.is_sealed)  # rows of older versions
        await registry.recover()
        tasks = [
            asyncio.create_task(_every(60, lambda: asyncio.to_thread(platform.catalog.refresh, False))),
            asyncio.create_task(_every(1.0, registry.watch)),
            # after the recoveries above: deployments found finished lose their token too
            asyncio.create_task(_every(1.0, lambda: revoke_ended_tokens(settings.db_url))),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()

    app = FastAPI(
        lifespan=lifespan,
        title="ai4lab platform API",
        version=__version__,
        description="Deployments, storage and accounts of an ai4lab platform. "
        "Authenticate with a JupyterHub API token: `Authorization: token <token>`.",
        docs_url=f"{auth.prefix}/docs",
        openapi_url=f"{auth.prefix}/openapi.json",
        redoc_url=None,
    )
    auth.install(app)
    app.state.api = api
    app.state.registry = registry
    app.state.catalog = platform.catalog
    routers = (
        accounts,
        deployments,
        deployment_tools,
        catalog,
        storage,
        datasets,
        secrets,
        pages,
        settings_pages,
        admin,
    )
    for module in routers:
        app.include_router(module.build_router(api))
    install_error_handlers(app, registry)
    return app


def install_error_handlers(app: FastAPI, registry: Registry) -> None:
    """Every refusal answers ``{"detail": <sentence>, "status": <code>}``; a 422 lists the fields at fault."""

    @app.exception_handler(PlatformError)
    async def _platform_error(request: Request, exc: PlatformError) -> JSONResponse:
        if exc.errors is not None:
            return JSONResponse({"detail": jsonable_encoder(exc.errors)}, status_code=exc.status)
        return JSONResponse({"detail": exc.message, "status": exc.status}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail, "status": exc.status_code},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 shape (a list, as the OpenAPI schema says), in sentences naming the field."""
        try:
            errors = readable_errors(exc.errors(), registry)
        except PlatformError as e:
            return await _platform_error(request, e)
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def readable_errors(errors: Any, registry: Registry) -> list[dict[str, Any]]:
    """Pydantic's errors as the client sent the body: without the union's tag in ``loc``, unknown fields named.

    A body validated against the union of the kinds' requests has errors at
    ``("body", "<kind>", field...)``; the client wrote no such level. An unknown
    kind is a 400 that lists the kinds this platform runs.
    """
    out = []
    for err in errors:
        err = {k: v for k, v in err.items() if k != "ctx"}
        loc = list(err.get("loc", ()))
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found") and loc[:1] == ["body"]:
            given = err["input"].get("kind") if isinstance(err.get("input"), dict) else None
            raise PlatformError(
                400, f"unknown deployment kind {given!r}: this platform runs {', '.join(registry.kinds)}"
            )
        if len(loc) > 1 and loc[0] == "body" and loc[1] in registry.requests:
            model = registry.requests[loc[1]]
            loc = ["body", *loc[2:]]
            if err.get("type") == "extra_forbidden":
                where, allowed = _fields_at(model, loc[1:-1])
                err["msg"] = f"unknown field {loc[-1]!r} for {where}: use {', '.join(allowed)}"
        elif err.get("type") == "extra_forbidden" and err.get("msg") == "Extra inputs are not permitted":
            err["msg"] = f"unknown field {loc[-1]!r}: this request does not take it"
        err["loc"] = loc
        out.append(err)
    return out


def _fields_at(model: Any, path: list[Any]) -> tuple[str, list[str]]:
    """The fields a request model takes at ``path`` (nested models, list items), and what to call that place."""
    where = f"kind {model.model_fields['kind'].annotation.__args__[0]!r}"
    for part in path:
        if isinstance(part, int):
            where = f"{where} item"
            continue
        field = model.model_fields.get(part)
        if field is None:
            break
        inner = field.annotation
        while getattr(inner, "__args__", None) and not hasattr(inner, "model_fields"):
            inner = next((a for a in inner.__args__ if hasattr(a, "model_fields")), inner.__args__[0])
        if not hasattr(inner, "model_fields"):
            break
        model, where = inner, part
    return where, [name for name in model.model_fields if name != "kind"]


async def _every(seconds: float, step: Callable[[], Awaitable[Any]]) -> None:
    """Run ``step`` forever, ``seconds`` apart; a failing step is logged and tried again."""
    while True:
        try:
            await step()
        except Exception:
            log.exception("background step failed")
        await asyncio.sleep(seconds)


def main() -> None:
    import uvicorn

    settings = get_settings()
    port = int(os.environ.get("AI4LAB_API_PORT", settings.api_port))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
