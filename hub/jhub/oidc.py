"""OIDC login (EGI Check-in, Keycloak, any OpenID provider) through oauthenticator's GenericOAuthenticator.

The OAuth flow, the token exchange and the refresh are oauthenticator's; what this
module adds is what a platform of VOs needs, AI4OS-style:

- the provider's endpoints from its discovery document, so an operator gives one issuer URL;
- VO membership, role and admin flag read from the claims (``eduperson_entitlement``,
  ``groups``) at every login and every refresh, written to the platform's ``users`` table
  (which the platform API and the spawners read), so a changed claim takes effect then;
- users outside every allowed VO refused with a page that says why;
- access tokens kept in ``auth_state`` (encrypted with the platform's JUPYTERHUB_CRYPT_KEY)
  and refreshed with the refresh token *before* they expire (oauthenticator on its own
  refreshes only once a request with the old one failed), and handed to sessions;
- the local accounts' form kept on the same login page (``oidc.local_login``), so local
  admins and OIDC users log in side by side.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Any

import httpx
from jupyterhub.utils import url_path_join
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import default

from ai4lab.core import accounts
from ai4lab.core.settings import ROLES, OidcSettings, get_settings
from ai4lab.jhub.authenticator import local_login

#: Where the platform keeps what it derived from the claims, inside auth_state.
STATE_KEY = "ai4lab"
#: The session variable holding the user's access token at the provider (fresh at each start).
TOKEN_ENV = "OIDC_ACCESS_TOKEN"


@dataclass(frozen=True)
class Access:
    """What a user's claims grant on this platform."""

    vos: tuple[str, ...]
    #: the VO recorded for the account (deployments and quotas per VO): the first allowed one
    vo: str | None
    role: str
    admin: bool
    #: why the user may not log in ('' : they may)
    refusal: str = ""


def claim_values(claims: dict[str, Any], names: list[str]) -> list[str]:
    """Every string of the named claims (a claim may hold one string or a list)."""
    values: list[str] = []
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, list):
            values.extend(v for v in value if isinstance(v, str))
    return values


def access_from_claims(claims: dict[str, Any], oidc: OidcSettings) -> Access:
    """VOs, role and admin flag from the entitlements or groups of ``claims``, as ``oidc`` maps them.

    Pure, so that each mapping rule is tested without a provider.
    """
    values = claim_values(claims, oidc.group_claims)
    pattern = re.compile(oidc.vo_pattern)
    vos: list[str] = []
    for value in values:
        m = pattern.search(value)
        if m and m.group("vo") not in vos:
            vos.append(m.group("vo"))
    role = oidc.default_role
    for value in values:
        for pat, mapped in oidc.role_map.items():
            if fnmatchcase(value, pat) and ROLES.index(mapped) > ROLES.index(role):
                role = mapped
    admin = any(fnmatchcase(v, pat) for v in values for pat in oidc.admin_groups)
    allowed = [vo for vo in oidc.allowed_vos if vo in vos]
    refusal = ""
    if oidc.allowed_vos and not allowed:
        mine = ", ".join(vos) or "none"
        refusal = (
            f"you are not a member of a VO allowed on this platform (allowed: {', '.join(oidc.allowed_vos)}; "
            f"yours: {mine}). Ask your VO manager to enrol you, then log in again."
        )
    vo = allowed[0] if allowed else (vos[0] if vos else None)
    return Access(vos=tuple(vos), vo=vo, role=role, admin=admin, refusal=refusal)


def discover(issuer: str, verify: bool = True) -> dict[str, Any]:
    """The provider's discovery document (``<issuer>/.well-known/openid-configuration``), checked.

    Why checked: OpenID Connect Discovery requires the document's ``issuer`` to be the URL
    it was fetched for; a mismatch means a misconfigured or impersonated provider.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        r = httpx.get(url, timeout=15, verify=verify, follow_redirects=True)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
    except (httpx.HTTPError, ValueError) as e:
        raise RuntimeError(f"the OIDC provider's discovery document {url} cannot be read: {e}") from e
    if doc.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise RuntimeError(f"{url} names the issuer {doc.get('issuer')!r}, not {issuer!r}: check oidc.issuer")
    return doc


class Ai4labOIDCAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator configured from the platform settings (``oidc``), with VOs and roles from claims."""

    @cached_property
    def oidc(self) -> OidcSettings:
        return get_settings().oidc

    @cached_property
    def db_url(self) -> str:
        return get_settings().db_url

    @cached_property
    def discovery(self) -> dict[str, Any]:
        if not self.oidc.issuer:
            raise RuntimeError("authenticator ai4lab-oidc needs oidc.issuer (AI4LAB_OIDC__ISSUER)")
        return discover(self.oidc.issuer, self.oidc.ssl_verify)

    # -- what GenericOAuthenticator is told, from the settings ------------------------------
    @default("authorize_url")
    def _authorize_url_default(self) -> str:
        return str(self.discovery["authorization_endpoint"])

    @default("token_url")
    def _token_url_default(self) -> str:
        return str(self.discovery["token_endpoint"])

    @default("userdata_url")
    def _userdata_url_default(self) -> str:
        return str(self.discovery["userinfo_endpoint"])

    @default("basic_auth")
    def _basic_auth_default(self) -> bool:
        # client_secret_basic unless the provider supports only the form post: it is OIDC's default
        # method, and some providers accept nothing else for the refresh grant
        methods = self.discovery.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        return "client_secret_basic" in methods

    @default("client_id")
    def _client_id_default(self) -> str:
        return self.oidc.client_id

    @default("client_secret")
    def _client_secret_default(self) -> str:
        return self.oidc.client_secret

    @default("oauth_callback_url")
    def _oauth_callback_url_default(self) -> str:
        return self.oidc.callback_url or f"{get_settings().public_url}/hub/oauth_callback"

    @default("scope")
    def _scope_default(self) -> list[str]:
        return list(self.oidc.scopes)

    @default("username_claim")
    def _username_claim_default(self) -> str:
        return self.oidc.username_claim

    @default("login_service")
    def _login_service_default(self) -> str:
        # JupyterHub shows the password form only without a login_service; with local accounts
        # kept, config/templates/login.html adds the "Sign in with" button (oidc_button) above it
        return "" if self.local_login else self.oidc.display_name

    @default("validate_server_cert")
    def _validate_server_cert_default(self) -> bool:
        return self.oidc.ssl_verify

    @default("enable_auth_state")
    def _enable_auth_state_default(self) -> bool:
        # the tokens are what sessions use at the provider's services: keep them (encrypted)
        return True

    @default("auth_refresh_age")
    def _auth_refresh_age_default(self) -> int:
        return self.oidc.refresh_age

    @default("allow_all")
    def _allow_all_default(self) -> bool:
        # who may log in is decided by the VOs (update_auth_model refuses the others, with the reason)
        return True

    @property
    def local_login(self) -> bool:
        """The login page also shows the local accounts' form."""
        return self.oidc.local_login

    @property
    def oidc_button(self) -> str:
        """The provider's name for the "Sign in with" button that config/templates/login.html adds above the
        local form ('' : no local form, JupyterHub's own page shows the button alone)."""
        return self.oidc.display_name if self.local_login else ""

    def login_url(self, base_url: str) -> str:
        # the local form posts here; the button goes to oauthenticator's /oauth_login (template)
        return str(url_path_join(base_url, "login")) if self.local_login else str(super().login_url(base_url))

    # -- login -----------------------------------------------------------------------------
    async def authenticate(self, handler: Any, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
        if data is not None:
            # the login page's form (POST /hub/login): a local account, when they are kept on
            return local_login(self, self.db_url, data) if self.local_login else None
        model = await super().authenticate(handler, data, **kwargs)
        self._record(model)
        return model

    async def get_token_info(self, handler: Any, params: dict[str, Any]) -> dict[str, Any]:
        """The token endpoint's answer, with the absolute time its access token expires (to refresh before)."""
        info: dict[str, Any] = await super().get_token_info(handler, params)
        if isinstance(info.get("expires_in"), int | float):
            info["expires_at"] = time.time() + float(info["expires_in"])
        return info

    async def update_auth_model(self, auth_model: dict[str, Any]) -> dict[str, Any]:
        """VOs, role and admin flag from the claims; 403 with the reason for whom the platform refuses."""
        name = auth_model["name"]
        claims = auth_model["auth_state"].get(self.user_auth_state_key) or {}
        try:
            accounts.validate_username(name or "")
        except accounts.AccountError as e:
            raise web.HTTPError(
                403,
                "%s",
                f"{e} (from the provider's claim {self.oidc.username_claim!r}): ask the operator to set "
                "oidc.username_claim",
            ) from None
        if accounts.is_local_account(self.db_url, name):
            raise web.HTTPError(403, "%s", str(accounts.local_name_taken(name)))
        access = access_from_claims(claims, self.oidc)
        if access.refusal:
            self.log.warning("OIDC login of %s refused: %s", name, access.refusal)
            raise web.HTTPError(403, "%s", access.refusal)
        # admin_users of the hub config stay admins; otherwise the claim decides, and its removal demotes
        auth_model["admin"] = bool(auth_model["admin"]) or access.admin
        auth_model["auth_state"][STATE_KEY] = {"vos": list(access.vos), "vo": access.vo, "role": access.role}
        return auth_model

    def _record(self, model: dict[str, Any] | None) -> None:
        """Write role, VO and admin flag of a login or refresh to the platform's users table."""
        if not model:
            return
        derived = model["auth_state"][STATE_KEY]
        try:
            accounts.record_external_login(
                self.db_url, model["name"], role=derived["role"], vo=derived["vo"], admin=bool(model["admin"])
            )
        except accounts.AccountError as e:  # a local account of that name appeared since update_auth_model
            raise web.HTTPError(403, "%s", str(e)) from None

    # -- refresh ---------------------------------------------------------------------------
    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        """Keep tokens and claims fresh: refresh an access token that expires within ``oidc.refresh_before``.

        Otherwise oauthenticator's own refresh: the claims are read again with the current
        token (a refused user must log in again, and is then told why). Local accounts have no
        auth_state and nothing to refresh.
        """
        auth_state = await user.get_auth_state()
        if not auth_state:
            return accounts.is_local_account(self.db_url, user.name)
        try:
            token_info = auth_state.get("token_response") or {}
            expires_at = token_info.get("expires_at")
            refresh_token = auth_state.get("refresh_token")
            if refresh_token and expires_at and expires_at - time.time() < self.oidc.refresh_before:
                model = await self._refresh_with(refresh_token, handler, user.name)
            else:
                model = await super().refresh_user(user, handler, **kwargs)
        except web.HTTPError as e:
            self.log.warning("OIDC refresh of %s refused: %s", user.name, e.get_message())
            return False
        if isinstance(model, dict):
            self._record(model)
        return model

    async def _refresh_with(self, refresh_token: str, handler: Any, name: str) -> dict[str, Any] | bool:
        """A new access token from the refresh token, and the auth model its claims give (False: log in again)."""
        self.log.info("Refreshing the OIDC access token of %s before it expires", name)
        try:
            info = await self.get_token_info(handler, self.build_refresh_token_request_params(refresh_token))
        except Exception as e:  # noqa: BLE001 - any failure of the provider means: log in again
            self.log.info("Refresh token of %s not accepted (%s): a new login is needed", name, e)
            return False
        if not info.get("refresh_token"):  # providers that do not rotate it keep the old one valid
            info["refresh_token"] = refresh_token
        # oauthenticator's own path from a token answer to an auth model (userinfo, update_auth_model)
        model: dict[str, Any] = await self._token_to_auth_model(info)
        return model

    # -- sessions --------------------------------------------------------------------------
    async def pre_spawn_start(self, user: Any, spawner: Any) -> None:
        """Sessions get the user's access token (refreshed just before, refresh_pre_spawn) as OIDC_ACCESS_TOKEN."""
        auth_state = await user.get_auth_state()
        if auth_state and auth_state.get("access_token"):
            spawner.environment = {**spawner.environment, TOKEN_ENV: auth_state["access_token"]}
