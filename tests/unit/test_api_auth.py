"""HubAuthenticator's request rules without a hub: XSRF on cookie-authenticated writes, ?token= in URLs.

The hub's answer to "whose token is this" is replaced by a dict; everything
else (the FastAPI app, the middleware setting the cookie, the checks) is real.
The same rules are exercised against a real hub in tests/integration/test_api_hardening.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from ai4lab.api.auth import XSRF_COOKIE, HubAuthenticator, HubUser

TOKENS = {"api-token": "alice", "oauth-token": "alice"}
COOKIE = "service-ai4lab-test"


def make_app(**kwargs: Any) -> tuple[FastAPI, HubAuthenticator]:
    auth = HubAuthenticator(prefix="/svc", **kwargs)
    auth.hub_auth.oauth_client_id = COOKIE

    async def user_for_token(token: str, sync: bool = False, **_: Any) -> dict[str, Any] | None:
        return {"kind": "user", "name": TOKENS[token], "admin": False, "scopes": []} if token in TOKENS else None

    auth.hub_auth.user_for_token = user_for_token  # type: ignore[method-assign]
    auth.hub_auth.check_scopes = lambda *a, **k: True  # type: ignore[method-assign]
    app = FastAPI()
    auth.install(app)

    @app.exception_handler(HTTPException)
    async def _error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/svc/me")
    async def me(request: Request) -> dict[str, str]:
        user: HubUser = await auth.user_for(request)
        return {"name": user.name, "xsrf": user.xsrf}

    @app.api_route("/svc/things", methods=["POST", "PUT", "PATCH", "DELETE"])
    async def create(request: Request) -> dict[str, Any]:
        user = await auth.user_for(request)
        form = await request.form() if "form" in request.headers.get("content-type", "") else {}
        return {"by": user.name, "form": dict(form)}

    return app, auth


def test_token_in_url_is_ignored_by_default() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        r = client.get("/svc/me", params={"token": "api-token"})
        assert r.status_code == 401 and "?token=" in r.json()["detail"] and "allow_token_in_url" in r.json()["detail"]
        assert client.get("/svc/me", headers={"Authorization": "token api-token"}).json()["name"] == "alice"


def test_token_in_url_when_allowed() -> None:
    app, _ = make_app(allow_token_in_url=True)
    with TestClient(app) as client:
        assert client.get("/svc/me", params={"token": "api-token"}).json() == {"name": "alice", "xsrf": ""}
        assert client.post("/svc/things", params={"token": "api-token"}).json()["by"] == "alice"
        assert client.get("/svc/me", params={"token": "wrong"}).status_code == 401


def test_cookie_writes_need_the_xsrf_token() -> None:
    app, auth = make_app()
    with TestClient(app) as client:
        client.cookies.set(COOKIE, "oauth-token")
        r = client.get("/svc/me")
        xsrf = r.json()["xsrf"]
        assert xsrf == auth.xsrf_token("oauth-token") and len(xsrf) > 30
        # the page's scripts find it in a cookie of the service's path, readable by scripts
        set_cookie = r.headers["set-cookie"]
        assert f"{XSRF_COOKIE}={xsrf}" in set_cookie and "Path=/svc/" in set_cookie and "HttpOnly" not in set_cookie
        assert client.cookies.get(XSRF_COOKIE) == xsrf
        assert "set-cookie" not in client.get("/svc/me").headers  # not set again

        r = client.post("/svc/things", json={})
        assert r.status_code == 403 and "XSRF token" in r.json()["detail"]
        r = client.post("/svc/things", headers={"X-XSRFToken": "forged"})
        assert r.status_code == 403 and "does not match" in r.json()["detail"]
        r = client.post("/svc/things", headers={"X-XSRFToken": auth.xsrf_token("another-session")})
        assert r.status_code == 403
        assert client.post("/svc/things", headers={"X-XSRFToken": xsrf}).json()["by"] == "alice"
        assert client.post("/svc/things", params={"_xsrf": xsrf}).status_code == 200
        # a plain HTML form: the field, and the route still reads its form
        r = client.post("/svc/things", data={"_xsrf": xsrf, "title": "t"})
        assert r.status_code == 200 and r.json()["form"] == {"_xsrf": xsrf, "title": "t"}
        for method in ("PUT", "PATCH", "DELETE"):
            assert client.request(method, "/svc/things").status_code == 403, method
            assert client.request(method, "/svc/things", headers={"X-XSRFToken": xsrf}).status_code == 200


def test_token_authenticated_writes_are_exempt() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        client.cookies.set(COOKIE, "oauth-token")  # a cookie too: the header wins, no XSRF needed
        r = client.post("/svc/things", headers={"Authorization": "token api-token"})
        assert r.status_code == 200 and "set-cookie" not in r.headers


@pytest.mark.parametrize("extra", [("mlflow-request-header-X-XSRFToken",)])
def test_extra_xsrf_cookies(extra: tuple[str, ...]) -> None:
    """The MLflow gateway also sets the cookie MLflow's UI turns into a request header."""
    app, auth = make_app(xsrf_cookies=(XSRF_COOKIE, *extra))
    with TestClient(app) as client:
        client.cookies.set(COOKIE, "oauth-token")
        cookies = client.get("/svc/me").headers.get_list("set-cookie")
        assert sorted(c.split("=")[0] for c in cookies) == sorted([XSRF_COOKIE, *extra])
        xsrf = auth.xsrf_token("oauth-token")
        assert client.post("/svc/things", headers={"X-XSRFToken": xsrf}).status_code == 200
