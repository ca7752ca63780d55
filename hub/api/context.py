"""What every router of the platform API shares: settings, catalog, the deployment registry, and who asks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ai4lab.api.auth import HubAuthenticator, HubUser
from ai4lab.catalog import Catalog
from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment
from ai4lab.core.errors import PlatformError
from ai4lab.core.settings import Settings
from ai4lab.core.storage import UserStorage, open_storage
from ai4lab.deploy.lifecycle import Caller, Platform
from ai4lab.deploy.registry import Registry


@dataclass
class ApiContext:
    settings: Settings
    auth: HubAuthenticator
    catalog: Catalog
    platform: Platform
    registry: Registry
    #: Callers' accounts, remembered a few seconds: browsing must not cost a query per request.
    _callers: dict[str, tuple[float, Caller]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.auth.prefix

    async def current_user(self, request: Request) -> HubUser:
        return await self.auth.user_for(request)

    async def optional_user(self, request: Request) -> HubUser | None:
        """Anonymous callers may browse public things; a bad token is still refused."""
        if self.auth.has_credentials(request):
            return await self.auth.user_for(request)
        return None

    def caller(self, user: HubUser, max_age: float = 10) -> Caller:
        """The user's platform account (role, VO), created on first sight."""
        now = time.monotonic()
        hit = self._callers.get(user.name)
        if hit and now - hit[0] < max_age and hit[1].admin == user.admin:
            return hit[1]
        caller = Caller.of(self.settings, user.name, admin=user.admin)
        self._callers[user.name] = (now, caller)
        return caller

    def visible(self, dep: Deployment | None, user: HubUser) -> Deployment:
        """The deployment if it is the user's (or they are an admin); 404 otherwise, so existence is not revealed."""
        if dep is None or (dep.owner != user.name and not user.admin):
            raise PlatformError.not_found("deployment")
        return dep

    def deployment(self, dep_id: str, user: HubUser) -> Deployment:
        return self.visible(deps.get(self.settings.db_url, dep_id), user)

    def storage(self, name: str) -> UserStorage:
        """``name``'s own storage, its root made theirs on first use; what the platform writes there is theirs."""
        store = open_storage(self.settings, name, self.platform.local.identity(name))
        store.ensure_root()
        return store


def api_of(request: Request) -> ApiContext:
    """The platform API's context (``create_app`` keeps it in ``app.state.api``)."""
    api: ApiContext = request.app.state.api
    return api


async def _current_user(request: Request) -> HubUser:
    return await api_of(request).current_user(request)


async def _optional_user(request: Request) -> HubUser | None:
    return await api_of(request).optional_user(request)


#: A route parameter of this type is the authenticated caller (401 without a valid token or login cookie).
User = Annotated[HubUser, Depends(_current_user)]
#: The caller if they sent credentials, None for anonymous browsing (a bad token is still refused).
MaybeUser = Annotated[HubUser | None, Depends(_optional_user)]
