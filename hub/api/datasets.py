"""``/datasets``: import a dataset by DOI or URL into ``datasets/<name>/`` of the caller's storage, and list them.

An import is a deployment of kind ``dataset`` (``ai4lab.deploy.datasets``):
``POST /datasets`` is the same as ``POST /deployments`` with ``kind:
dataset``, and the import is followed, cancelled (``DELETE``) and read (logs,
progress) under ``/deployments/<id>`` like any other job. ``GET /datasets``
lists the folders under ``datasets/``, each with its card.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (local aliases) as objects

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from ai4lab.api.answers import DatasetCard, DatasetEntry, DeploymentView
from ai4lab.api.context import ApiContext, User
from ai4lab.deploy.datasets import DatasetImports, DatasetSource, list_datasets


def build_router(api: ApiContext) -> APIRouter:
    router = APIRouter(prefix=f"{api.prefix}/datasets", tags=["datasets"])
    imports = api.registry.lifecycles[("dataset", "local")]
    assert isinstance(imports, DatasetImports)

    @router.get(
        "", summary="My datasets: the folders under datasets/ with their cards", response_model=list[DatasetEntry]
    )
    async def datasets(user: User) -> list[dict[str, Any]]:
        store = await asyncio.to_thread(api.storage, user.name)  # S3 or WebDAV answer over the network
        found = await asyncio.to_thread(list_datasets, store)
        for entry in found:  # a dataset.json the user wrote by hand is shown only when it is a card
            try:
                entry["card"] = DatasetCard.model_validate(entry["card"]).model_dump() if entry["card"] else None
            except ValidationError:
                entry["card"] = None
        return found

    @router.post(
        "",
        status_code=201,
        summary="Import a dataset by Zenodo DOI, Zenodo record URL or HTTPS URL (a job: follow it in /deployments)",
        response_model=DeploymentView,
    )
    async def import_dataset(body: DatasetSource, user: User) -> dict[str, Any]:
        dep = await imports.create(body, api.caller(user))
        return dep.to_dict()

    return router
