"""``/secrets``: the caller's own secrets (tokens, passwords): store, replace, list by name, delete.

A value goes in and never comes back out: the listing has names and times
only, for the owner and for admins alike (an admin's listing is their own).
Deployments and sessions that name a secret get its value as an environment
variable or a file (``ai4lab.core.user_secrets``). A refused request (bad
name, empty or too large value, an existing name on ``POST``) changes nothing.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (local aliases) as objects

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ai4lab.api.answers import Deleted, SecretEntry
from ai4lab.api.context import ApiContext, User
from ai4lab.core import user_secrets


class NewSecret(BaseModel):
    """``POST /secrets``: a secret that does not exist yet."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="letters, digits and _, not starting with a digit (e.g. HF_TOKEN)")
    value: SecretStr = Field(description="the secret; it is never shown again")


class SecretValue(BaseModel):
    """``PUT /secrets/{name}``: the (new) value of a secret."""

    model_config = ConfigDict(extra="forbid")

    value: SecretStr = Field(description="the secret; it is never shown again")


def build_router(api: ApiContext) -> APIRouter:
    settings = api.settings
    router = APIRouter(prefix=f"{api.prefix}/secrets", tags=["secrets"])

    @router.get("", summary="My secrets, by name (values are never listed)", response_model=list[SecretEntry])
    async def list_secrets(user: User) -> list[dict[str, Any]]:
        return user_secrets.list_secrets(settings.db_url, user.name)

    @router.post("", status_code=201, summary="Store a new secret (409 if the name exists)", response_model=SecretEntry)
    async def create_secret(body: NewSecret, user: User) -> dict[str, Any]:
        entry, _ = user_secrets.put(settings, user.name, body.name, body.value.get_secret_value(), replace=False)
        return entry

    @router.put(
        "/{name}",
        summary="Store or replace a secret",
        response_model=SecretEntry,
        responses={201: {"model": SecretEntry, "description": "a new secret was stored"}},
    )
    async def replace_secret(name: str, body: SecretValue, user: User, response: Response) -> dict[str, Any]:
        entry, created = user_secrets.put(settings, user.name, name, body.value.get_secret_value(), replace=True)
        if created:
            response.status_code = 201
        return entry

    @router.delete("/{name}", summary="Delete a secret", response_model=Deleted)
    async def delete_secret(name: str, user: User) -> dict[str, str]:
        user_secrets.delete(settings.db_url, user.name, name)
        return {"deleted": name}

    return router
