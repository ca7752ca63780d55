"""OIDC login through the hub against a real OpenID provider running here (PyPI ``oidc-provider-mock``).

One platform with ``authenticator: ai4lab-oidc`` and local accounts kept beside it
(``oidc.local_login``), started for this module's xdist group. The provider issues
access tokens that live ACCESS_TOKEN_SECONDS at login (those of its refresh grant live
an hour), and the platform refreshes them 4 s after they were issued, so that the
refresh before expiry happens within the tests.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.integration.test_browser import browser  # noqa: F401  (the headless Chromium fixture)
from tests.platform_harness import Platform, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("oidc")]

API = "/services/ai4lab"
ACCESS_TOKEN_SECONDS = 12
AI4EOSC = "urn:mace:egi.eu:group:vo.ai4eosc.eu:role=member#aai.egi.eu"
IMAGINE = "urn:mace:egi.eu:group:vo.imagine-ai.eu:role=member#aai.egi.eu"
ADMINS = "urn:mace:egi.eu:group:vo.ai4eosc.eu:platform-admins:role=member#aai.egi.eu"
OTHER = "urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu"


@dataclass
class Provider:
    """The OpenID provider: users are set with their claims through its ``PUT /users/<sub>``."""

    url: str

    def set_user(self, sub: str, username: str, entitlements: list[str], **claims: Any) -> None:
        body = {"preferred_username": username, "email": f"{username}@example.org",
                "eduperson_entitlement": entitlements, **claims}
        r = httpx.put(f"{self.url}/users/{sub}", json=body, timeout=10)
        assert r.status_code == 204, r.text

    def userinfo(self, access_token: str) -> httpx.Response:
        return httpx.get(f"{self.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


@pytest.fixture(scope="session")
def provider() -> Iterator[Provider]:
    import oidc_provider_mock

    with oidc_provider_mock.run_server_in_thread(access_token_max_age=timedelta(seconds=ACCESS_TOKEN_SECONDS)) as srv:
        yield Provider(f"http://localhost:{srv.server_port}")


@pytest.fixture(scope="session")
def oidc_platform(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[Platform]:
    oidc = {
        "issuer": provider.url,
        "client_id": "ai4lab-test",
        "client_secret": "a-client-secret-for-tests",
        "display_name": "EGI Check-in",
        "allowed_vos": ["vo.ai4eosc.eu", "vo.imagine-ai.eu"],
        "role_map": {AI4EOSC: "intermediate", "*:platform-admins:*": "advanced"},
        "admin_groups": ["urn:mace:egi.eu:group:vo.ai4eosc.eu:platform-admins:*"],
        "refresh_age": 1,
        # tokens live 12 s: refreshed once fewer than 8 s are left, so 4 s after they were issued
        "refresh_before": ACCESS_TOKEN_SECONDS - 4,
    }
    p = Platform.create(Path(tmp_path_factory.mktemp("oidc")) / "state", authenticator="ai4lab-oidc",
                        oidc=json.dumps(oidc))
    p.start()
    try:
        yield p
    finally:
        if p.proc and p.proc.poll() is None:
            p.stop()


def oidc_login(platform: Platform, sub: str) -> tuple[httpx.Client, httpx.Response]:
    """The browser flow with httpx: the hub sends us to the provider, we authorize as ``sub``, and come back."""
    client = httpx.Client(base_url=platform.url, follow_redirects=True, timeout=60)
    form = client.get("/hub/oauth_login", params={"next": "/hub/home"})
    assert form.url.host == "localhost" and "Authorize" in form.text, (form.url, form.text[:300])
    return client, client.post(str(form.url), data={"sub": sub})


def me(client: httpx.Client) -> dict[str, Any]:
    """``GET /me`` of the platform API in the browser session (the service's own OAuth through the hub)."""
    r = client.get(f"{API}/me", headers={"Accept": "text/html"})  # a browser: sent through the hub's OAuth once
    assert r.status_code == 200, r.text
    return r.json()


def auth_state(platform: Platform, name: str) -> dict[str, Any]:
    with platform.api(platform.token("admin")) as admin:
        r = admin.get(f"/hub/api/users/{name}")
        assert r.status_code == 200, r.text
        return r.json()["auth_state"]


def test_two_users_of_different_vos_get_their_roles_and_quotas(oidc_platform: Platform, provider: Provider) -> None:
    provider.set_user("sub-ana", "oidc-ana", [AI4EOSC])
    provider.set_user("sub-ben", "oidc-ben", [IMAGINE])
    ana, home = oidc_login(oidc_platform, "sub-ana")
    assert home.status_code == 200 and home.url.path == "/hub/home" and "oidc-ana" in home.text
    ben, _ = oidc_login(oidc_platform, "sub-ben")
    a, b = me(ana), me(ben)
    assert (a["name"], a["role"], a["vo"], a["admin"]) == ("oidc-ana", "intermediate", "vo.ai4eosc.eu", False)
    assert (b["name"], b["role"], b["vo"], b["admin"]) == ("oidc-ben", "basic", "vo.imagine-ai.eu", False)
    assert a["quota"] == {"cpu": 4.0, "ram_gb": 16.0, "gpu": 1, "sessions": 2, "trainings": 1, "storage_gb": 50.0}
    assert b["quota"] == {"cpu": 2.0, "ram_gb": 4.0, "gpu": 0, "sessions": 1, "trainings": 0, "storage_gb": 5.0}
    # the platform's users table holds what the claims said (what the CLI and the admin view show)
    listing = oidc_platform.cli("users", "list").stdout
    assert re.search(r"oidc-ana\s.*intermediate\s.*vo\.ai4eosc\.eu", listing), listing

    # the tokens are in auth_state, and encrypted in the hub's database (JUPYTERHUB_CRYPT_KEY of the platform)
    state = auth_state(oidc_platform, "oidc-ana")
    assert state["ai4lab"] == {"vos": ["vo.ai4eosc.eu"], "vo": "vo.ai4eosc.eu", "role": "intermediate"}
    assert provider.userinfo(state["access_token"]).json()["preferred_username"] == "oidc-ana"
    assert state["refresh_token"]
    hub_db = sqlite3.connect(oidc_platform.state / "jupyterhub.sqlite")
    blobs = b"".join(bytes(row[0] or b"") for row in hub_db.execute("SELECT encrypted_auth_state FROM users"))
    assert blobs and state["access_token"].encode() not in blobs and state["refresh_token"].encode() not in blobs


def test_basic_user_is_refused_a_training_with_the_reason_and_a_new_claim_counts_at_next_login(
    oidc_platform: Platform, provider: Provider
) -> None:
    provider.set_user("sub-carl", "oidc-carl", [IMAGINE])
    carl, _ = oidc_login(oidc_platform, "sub-carl")
    assert me(carl)["role"] == "basic"
    with oidc_platform.api(oidc_platform.token("oidc-carl")) as api:
        r = api.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits", "dataset": "datasets/x"})
    assert r.status_code == 403, r.text
    assert "training needs role intermediate or advanced; yours is basic" in r.json()["detail"]

    # the VO manager grants the entitlement: it counts from the next login on
    provider.set_user("sub-carl", "oidc-carl", [IMAGINE, AI4EOSC])
    again, _ = oidc_login(oidc_platform, "sub-carl")
    assert (me(again)["role"], me(again)["vo"]) == ("intermediate", "vo.ai4eosc.eu")


def test_admin_claim_opens_the_admin_panel(oidc_platform: Platform, provider: Provider) -> None:
    provider.set_user("sub-dora", "oidc-dora", [AI4EOSC, ADMINS])
    provider.set_user("sub-eli", "oidc-eli", [AI4EOSC])
    dora, _ = oidc_login(oidc_platform, "sub-dora")
    panel = dora.get("/hub/admin")
    assert panel.status_code == 200 and panel.url.path == "/hub/admin" and "admin-react" in panel.text
    assert (me(dora)["admin"], me(dora)["role"]) == (True, "advanced")
    eli, _ = oidc_login(oidc_platform, "sub-eli")
    assert eli.get("/hub/admin").status_code == 403
    assert me(eli)["admin"] is False


def test_user_outside_the_vos_is_refused_with_the_reason(oidc_platform: Platform, provider: Provider) -> None:
    provider.set_user("sub-fay", "oidc-fay", [OTHER])
    fay, page = oidc_login(oidc_platform, "sub-fay")
    assert page.status_code == 403
    assert "not a member of a VO allowed on this platform" in page.text
    assert "vo.ai4eosc.eu, vo.imagine-ai.eu" in page.text and "yours: vo.other.eu" in page.text
    assert "jupyterhub-session-id" not in fay.cookies or fay.get("/hub/home").url.path == "/hub/login"
    assert "oidc-fay" not in oidc_platform.cli("users", "list").stdout  # no account made for them


def test_a_provider_name_cannot_take_over_a_local_account_nor_be_unusable(oidc_platform: Platform, provider: Provider) -> None:
    provider.set_user("sub-mallory", "admin", [AI4EOSC, ADMINS])
    _, page = oidc_login(oidc_platform, "sub-mallory")
    assert page.status_code == 403 and "belongs to a local account of this platform" in page.text
    provider.set_user("sub-zoe", "Zoë Smith", [AI4EOSC])
    _, page = oidc_login(oidc_platform, "sub-zoe")
    assert page.status_code == 403 and "invalid user name" in page.text and "oidc.username_claim" in page.text


def test_local_accounts_log_in_beside_oidc_and_stay_logged_in(oidc_platform: Platform) -> None:
    page = httpx.get(f"{oidc_platform.url}/hub/login", timeout=30)
    assert "Sign in with EGI Check-in" in page.text and 'name="password"' in page.text
    admin = oidc_platform.login("admin", oidc_platform.admin_password)
    time.sleep(2.5)  # beyond refresh_age: a local account has no tokens to refresh and is not logged out
    home = admin.get("/hub/home")
    assert home.status_code == 200 and home.url.path == "/hub/home"
    assert admin.get("/hub/admin").status_code == 200
    assert me(admin)["role"] == "advanced"


def test_access_token_is_refreshed_before_it_expires(oidc_platform: Platform, provider: Provider) -> None:
    provider.set_user("sub-gus", "oidc-gus", [AI4EOSC])
    gus, _ = oidc_login(oidc_platform, "sub-gus")
    first = auth_state(oidc_platform, "oidc-gus")
    assert provider.userinfo(first["access_token"]).status_code == 200

    def refreshed() -> dict[str, Any] | None:
        # a request of the user's browser: the hub refreshes
        assert gus.get("/hub/home").url.path == "/hub/home", oidc_platform.hub_log()[-3000:]
        state = auth_state(oidc_platform, "oidc-gus")
        return state if state["access_token"] != first["access_token"] else None

    second = wait_until(refreshed, ACCESS_TOKEN_SECONDS, "the access token was not refreshed", every=0.5)
    left = second["token_response"]["expires_at"] - time.time()
    assert left > ACCESS_TOKEN_SECONDS - 4  # a fresh one
    assert provider.userinfo(second["access_token"]).status_code == 200
    assert provider.userinfo(first["access_token"]).status_code in (400, 401)  # the provider retired the old one
    assert "Refreshing the OIDC access token of oidc-gus before it expires" in oidc_platform.hub_log()


def test_browser_login_with_the_provider_button(browser: Any, oidc_platform: Platform, provider: Provider) -> None:
    provider.set_user("sub-ida", "oidc-ida", [AI4EOSC])
    provider.set_user("sub-jon", "oidc-jon", [OTHER])
    page = browser.new_context().new_page()
    page.goto(f"{oidc_platform.url}/hub/login")
    assert page.is_visible("input[name=password]")  # the local accounts' form stays
    page.click("#oidc-login")  # "Sign in with EGI Check-in"
    page.fill("input[name=sub]", "sub-ida")
    page.click("button[type=submit]:has-text('Authorize')")
    page.wait_for_url("**/hub/**", timeout=60_000)
    page.goto(f"{oidc_platform.url}/hub/home")
    assert page.url.endswith("/hub/home") and "oidc-ida" in page.content()
    page.goto(f"{oidc_platform.url}{API}/me")
    assert '"role":"intermediate"' in page.content().replace(" ", "")

    refused = browser.new_context().new_page()
    refused.goto(f"{oidc_platform.url}/hub/login")
    refused.click("#oidc-login")
    refused.fill("input[name=sub]", "sub-jon")
    with refused.expect_response(lambda r: "/hub/oauth_callback" in r.url) as callback:
        refused.click("button[type=submit]:has-text('Authorize')")
    assert callback.value.status == 403
    refused.wait_for_selector("text=not a member of a VO allowed on this platform")


def test_session_gets_the_access_token_and_a_fresh_one_later(oidc_platform: Platform, provider: Provider) -> None:
    provider.set_user("sub-kim", "oidc-kim", [AI4EOSC])
    oidc_login(oidc_platform, "sub-kim")
    at_login = auth_state(oidc_platform, "oidc-kim")["access_token"]
    with oidc_platform.api(oidc_platform.token("oidc-kim")) as api:
        r = api.post("/hub/api/users/oidc-kim/server",
                     json={"profile": "small", "ide": "lab", "cpu": 1, "ram_gb": 2, "gpu": 0})
        assert r.status_code in (201, 202), r.text
        try:
            oidc_platform.wait_server(oidc_platform.token("admin"), "oidc-kim")
            envs = [env for p in psutil.process_iter() if (env := _env_of(p)).get("JUPYTERHUB_USER") == "oidc-kim"]
            # the session's own API token gets the current access token, however long the session runs:
            # once the one of the login is due for refresh, a new one
            with oidc_platform.api(envs[0]["AI4LAB_API_TOKEN"]) as session:

                def newer() -> httpx.Response | None:
                    r = session.get(f"{API}/me/oidc-token")
                    assert r.status_code == 200, r.text
                    return r if r.json()["access_token"] != at_login else None

                fresh = wait_until(newer, ACCESS_TOKEN_SECONDS, "no fresh access token for the session", every=1)
            assert fresh.json()["access_token"] == auth_state(oidc_platform, "oidc-kim")["access_token"]
            assert fresh.json()["expires_at"] > time.time()
            assert provider.userinfo(fresh.json()["access_token"]).json()["preferred_username"] == "oidc-kim"
            # the session started with the token of its start (the login's, or its refresh when that was due)
            assert envs and all(env.get("OIDC_ACCESS_TOKEN") in (at_login, fresh.json()["access_token"]) for env in envs)
            # the key that decrypts everyone's auth_state stays in the hub: not in the session, nor the services
            crypt_key = json.loads((oidc_platform.state / "secrets.json").read_text())["crypt_key"]
            services = [env for p in psutil.process_iter() if (env := _env_of(p)).get("JUPYTERHUB_SERVICE_NAME")
                        and env.get("AI4LAB_STATE_DIR") == str(oidc_platform.state)]
            assert len(services) >= 2
            assert not [env for env in envs + services if crypt_key in env.values()]
        finally:
            assert api.delete("/hub/api/users/oidc-kim/server").status_code in (202, 204)
    # a local account has no provider token: said so
    with oidc_platform.api(oidc_platform.token("admin")) as admin:
        r = admin.get(f"{API}/me/oidc-token")
    assert r.status_code == 404 and "logs in with a password" in r.json()["detail"]


def _env_of(p: psutil.Process) -> dict[str, str]:
    try:
        return p.environ()
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return {}
