"""JupyterHub authentication for the platform's FastAPI services.

API clients send the hub token (``Authorization: token|Bearer ...``, as MLflow
and JupyterHub clients do); browsers go through the hub's OAuth flow once and
then carry an HTTP-only cookie. Every request is checked against the hub, and
the token must carry ``access:services!service=<this service>``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse
from jupyterhub.services.auth import HubOAuth

STATE_COOKIE = "ai4lab-oauth-state"


@dataclass
class HubUser:
    name: str
    admin: bool
    token: str
    model: dict[str, Any]


class NeedsLogin(Exception):
    """Raised for browsers without a session: answered with a redirect to the hub login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class HubAuthenticator:
    """Validates hub tokens for one service (one per process, caches answers briefly)."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = (prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")).rstrip("/")
        self.hub_auth = HubOAuth(
            api_token=os.environ.get("JUPYTERHUB_API_TOKEN", "unset"),
            cache_max_age=30,
            oauth_client_id=os.environ.get("JUPYTERHUB_CLIENT_ID", "unset"),
            pkce_enabled=False,
        )
        # token -> (checked at, user): the hub is asked again after cache_seconds, so a
        # revoked token stops working within that time
        self.cache_seconds = 30.0
        self._checked: dict[str, tuple[float, HubUser]] = {}

    @property
    def cookie_name(self) -> str:
        return self.hub_auth.oauth_client_id.replace("__Host-", "")

    @staticmethod
    def _header_token(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("token", "bearer") and value.strip():
            return value.strip()
        return request.query_params.get("token")

    def has_credentials(self, request: Request) -> bool:
        return bool(self._header_token(request) or request.cookies.get(self.cookie_name))

    async def user_for(self, request: Request) -> HubUser:
        token = self._header_token(request) or request.cookies.get(self.cookie_name)
        hit = self._checked.get(token) if token else None
        if hit is not None and time.monotonic() - hit[0] < self.cache_seconds:
            return hit[1]
        user = await self._check(request)
        if len(self._checked) > 10_000:
            self._checked.clear()
        self._checked[user.token] = (time.monotonic(), user)
        return user

    async def _check(self, request: Request) -> HubUser:
        token = self._header_token(request)
        from_cookie = False
        if not token:
            token = request.cookies.get(self.cookie_name)
            from_cookie = bool(token)
        if not token:
            self._refuse(request, "no token: send 'Authorization: token <hub API token>'")
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model:
            self._refuse(request, "invalid or expired token", from_cookie=from_cookie)
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            raise HTTPException(403, f"token of {model.get('name')} may not access this service")
        if model.get("kind") == "service" or "name" not in model:
            raise HTTPException(403, "this service serves users, not services")
        return HubUser(name=model["name"], admin=bool(model.get("admin")), token=token, model=model)

    def _refuse(self, request: Request, reason: str, from_cookie: bool = False) -> None:
        wants_html = "text/html" in request.headers.get("accept", "")
        if request.method == "GET" and wants_html:
            raise NeedsLogin(str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""))
        raise HTTPException(401, reason)

    def login_redirect(self, next_url: str) -> RedirectResponse:
        state = secrets.token_urlsafe(16)
        redirect = RedirectResponse(self.hub_auth.login_url + f"&state={quote(state)}", status_code=302)
        redirect.set_cookie(
            STATE_COOKIE,
            json.dumps({"state": state, "next": next_url}),
            httponly=True,
            max_age=600,
            path=self.prefix + "/",
            samesite="lax",
        )
        return redirect

    def router(self) -> APIRouter:
        """The OAuth callback that turns a code into the session cookie."""
        router = APIRouter(prefix=self.prefix)

        @router.get("/oauth_callback", include_in_schema=False)
        async def oauth_callback(request: Request, code: str = "", state: str = "") -> RedirectResponse:
            try:
                saved = json.loads(request.cookies.get(STATE_COOKIE, "{}"))
            except ValueError:
                saved = {}
            if not code or not state or saved.get("state") != state:
                raise HTTPException(400, "OAuth state mismatch: open the page again to log in")
            token = await self.hub_auth.token_for_code(code, sync=False)
            next_url = saved.get("next") or self.prefix + "/"
            if not next_url.startswith(self.prefix):
                next_url = self.prefix + "/"
            response = RedirectResponse(next_url, status_code=302)
            response.set_cookie(
                self.cookie_name, token, httponly=True, path=self.prefix + "/", samesite="lax"
            )
            response.delete_cookie(STATE_COOKIE, path=self.prefix + "/")
            return response

        return router

    def install(self, app: Any) -> None:
        """Add the callback route and the login redirect handler to a FastAPI app."""
        app.include_router(self.router())

        @app.exception_handler(NeedsLogin)
        async def _needs_login(request: Request, exc: NeedsLogin) -> RedirectResponse:
            return self.login_redirect(exc.next_url)
