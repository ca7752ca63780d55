"""JupyterHub authentication for the platform's FastAPI services.

API clients send the hub token (``Authorization: token|Bearer ...``, as MLflow
and JupyterHub clients do); browsers go through the hub's OAuth flow once and
then carry an HTTP-only cookie. Every request is checked against the hub, and
the token must carry ``access:services!service=<this service>``.

Two rules taken from JupyterHub's own services (``jupyterhub/services/auth.py``):

- A write (POST, PUT, PATCH, DELETE) authenticated by the cookie must carry the
  session's XSRF token (``X-XSRFToken`` header, or ``_xsrf`` as a query or
  urlencoded form field). The browser sends the cookie with any request to the
  service, also one that another page (another user's notebook server on the
  same host) makes it send; only the service's own pages know the token. The
  service sets it in the ``_xsrf`` cookie (readable by its pages' scripts) and
  pages also get it as ``HubUser.xsrf``. Token-authenticated requests are exempt:
  a page cannot make the browser add an ``Authorization`` header.
- ``?token=`` in URLs is ignored unless the ``allow_token_in_url`` setting is on:
  URLs end up in logs, browser history and Referer headers.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from jupyterhub.services.auth import HubOAuth
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATE_COOKIE = "ai4lab-oauth-state"
XSRF_COOKIE = "_xsrf"
XSRF_HEADERS = ("x-xsrftoken", "x-csrftoken")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Where the XSRF token of a cookie-authenticated request is kept for the response's Set-Cookie.
XSRF_STATE = "ai4lab_xsrf"


@dataclass
class HubUser:
    name: str
    admin: bool
    token: str
    model: dict[str, Any]
    #: the XSRF token cookie-authenticated writes of this browser session must carry ('' : token auth)
    xsrf: str = ""


class NeedsLogin(Exception):
    """Raised for browsers without a session: answered with a redirect to the hub login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class HubAuthenticator:
    """Validates hub tokens for one service (one per process, caches answers briefly)."""

    def __init__(
        self,
        prefix: str | None = None,
        *,
        allow_token_in_url: bool = False,
        xsrf_cookies: tuple[str, ...] = (XSRF_COOKIE,),
    ) -> None:
        """``xsrf_cookies``: the cookies the XSRF token is set in, for the service's pages to read
        (the MLflow gateway adds ``mlflow-request-header-X-XSRFToken``, which MLflow's UI turns
        into a header of its every request)."""
        self.prefix = (prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")).rstrip("/")
        self.allow_token_in_url = allow_token_in_url
        self.xsrf_cookies = xsrf_cookies
        # derived from the service's own secret: stable across restarts, so open pages keep working
        service_secret = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self._xsrf_key = (
            hashlib.sha256(b"ai4lab-xsrf\0" + service_secret.encode()).digest()
            if service_secret
            else secrets.token_bytes(32)
        )
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

    def _header_token(self, request: Request) -> str | None:
        """The token of the Authorization header, or of ``?token=`` when the setting allows it."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("token", "bearer") and value.strip():
            return value.strip()
        if self.allow_token_in_url:
            return request.query_params.get("token") or None
        return None

    def has_credentials(self, request: Request) -> bool:
        return bool(self._header_token(request) or request.cookies.get(self.cookie_name))

    def xsrf_token(self, cookie_token: str) -> str:
        """The XSRF token of a browser session: bound to its OAuth token, which only the hub and
        this service know (the cookie is HTTP-only), so no other page can compute it."""
        digest = hmac.new(self._xsrf_key, cookie_token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    async def _check_xsrf(self, request: Request, cookie_token: str) -> None:
        """403 unless a cookie-authenticated write carries this session's XSRF token."""
        given = next((request.headers[h] for h in XSRF_HEADERS if request.headers.get(h)), None)
        given = given or request.query_params.get("_xsrf")
        if not given and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            # body() is cached on the request: the route can still read the form
            given = next(iter(parse_qs((await request.body()).decode("utf-8", "replace")).get("_xsrf", [])), None)
        if not given:
            raise HTTPException(
                403,
                f"{request.method} with the login cookie needs the page's XSRF token: "
                "send it as the X-XSRFToken header (the _xsrf cookie holds it), "
                "or use 'Authorization: token <token>'",
            )
        if not hmac.compare_digest(given.encode(), self.xsrf_token(cookie_token).encode()):
            raise HTTPException(403, "the XSRF token does not match this login session: reload the page")

    async def user_for(self, request: Request) -> HubUser:
        header_token = self._header_token(request)
        cookie_token = None if header_token else request.cookies.get(self.cookie_name)
        if cookie_token and request.method.upper() not in SAFE_METHODS:
            await self._check_xsrf(request, cookie_token)
        token = header_token or cookie_token
        hit = self._checked.get(token) if token else None
        if hit is not None and time.monotonic() - hit[0] < self.cache_seconds:
            user = hit[1]
        else:
            user = await self._check(request)
            if len(self._checked) > 10_000:
                self._checked.clear()
            self._checked[user.token] = (time.monotonic(), user)
        if cookie_token:
            user = dataclasses.replace(user, xsrf=self.xsrf_token(cookie_token))
            setattr(request.state, XSRF_STATE, user.xsrf)
        return user

    async def _check(self, request: Request) -> HubUser:
        token = self._header_token(request)
        from_cookie = False
        if not token:
            token = request.cookies.get(self.cookie_name)
            from_cookie = bool(token)
        if not token:
            if request.query_params.get("token"):
                self._refuse(
                    request,
                    "a token in the URL (?token=) is not accepted on this platform "
                    "(setting allow_token_in_url): send 'Authorization: token <token>'",
                )
            self._refuse(request, "no token: send 'Authorization: token <hub API token>'")
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model:
            self._refuse(request, "invalid or expired token", from_cookie=from_cookie)
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            raise HTTPException(403, f"token of {model.get('name')} may not access this service")
        if model.get("kind") == "service" or "name" not in model:
            raise HTTPException(403, "this service serves users, not services")
        return HubUser(name=model["name"], admin=bool(model.get("admin")), token=token, model=model)

    def _refuse(self, request: Request, reason: str, from_cookie: bool = False) -> NoReturn:
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
            response.set_cookie(self.cookie_name, token, httponly=True, path=self.prefix + "/", samesite="lax")
            for _name, value in self.xsrf_set_cookies(self.xsrf_token(token), {}):
                response.raw_headers.append((b"set-cookie", value.encode("latin-1")))
            response.delete_cookie(STATE_COOKIE, path=self.prefix + "/")
            return response

        return router

    def xsrf_set_cookies(self, token: str, cookies: dict[str, str]) -> list[tuple[str, str]]:
        """``Set-Cookie`` values for the XSRF cookies that ``cookies`` (the request's) lack or hold stale.

        Not HTTP-only: the service's page scripts read them. Scoped to the service's prefix.
        """
        out = []
        for name in self.xsrf_cookies:
            if cookies.get(name) != token:
                r = Response()
                r.set_cookie(name, token, path=self.prefix + "/", samesite="lax", httponly=False)
                out.append((name, r.headers["set-cookie"]))
        return out

    def install(self, app: Any) -> None:
        """Add the callback route, the XSRF cookie and the login redirect handler to a FastAPI app."""
        app.include_router(self.router())
        app.add_middleware(XsrfCookieMiddleware, auth=self)

        @app.exception_handler(NeedsLogin)
        async def _needs_login(request: Request, exc: NeedsLogin) -> RedirectResponse:
            return self.login_redirect(exc.next_url)


class XsrfCookieMiddleware:
    """Sets the XSRF cookies on responses to cookie-authenticated requests that lack them.

    Pure ASGI (not ``BaseHTTPMiddleware``) so that streamed responses (logs,
    the MLflow UI) pass through untouched.
    """

    def __init__(self, app: ASGIApp, auth: HubAuthenticator) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                token = scope.get("state", {}).get(XSRF_STATE)
                if token:
                    headers = MutableHeaders(scope=message)
                    for _, value in self.auth.xsrf_set_cookies(token, Request(scope).cookies):
                        headers.append("set-cookie", value)
            await send(message)

        await self.app(scope, receive, send_with_cookie)
