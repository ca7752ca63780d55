"""JupyterHub authenticator for the platform's local accounts (the embedded default).

Passwords live hashed in the platform database (``ai4lab users add``); the
admin flag there decides JupyterHub admin status at each login. OIDC
deployments use ``ai4lab-oidc`` (``ai4lab.jhub.oidc``), which keeps this form beside
the provider's button.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Unicode, default

from ai4lab.core import accounts
from ai4lab.core.settings import get_settings


class Ai4labAuthenticator(Authenticator):
    db_url = Unicode(
        config=True,
        help="SQLAlchemy URL of the platform database holding the accounts (default: the platform settings' database).",
    )

    @default("db_url")
    def _default_db_url(self) -> str:
        return get_settings().db_url

    @default("allow_all")
    def _default_allow_all(self) -> bool:
        # Only accounts that exist in the platform database can authenticate at all.
        return True

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        return local_login(self, self.db_url, data)


def local_login(auth: Authenticator, db_url: str, data: dict[str, str]) -> dict[str, Any] | None:
    """The auth model of a local account whose password the login form gave, or None.

    Shared with the OIDC authenticator, whose login page keeps this form for local accounts.
    """
    name = auth.normalize_username(data.get("username", ""))
    user = accounts.authenticate(db_url, name, data.get("password", ""))
    if user is None:
        auth.log.warning("Failed login for %s", name)
        return None
    return {"name": user.name, "admin": user.is_admin}
