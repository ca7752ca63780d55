"""``/storage``: the caller's own storage: list, download, upload, make folders, delete.

Every path goes through the storage's resolver (``ai4lab.core.storage``): a
path or a symlink that leaves the user's storage is a 400, as is any other
malformed path; a missing file is a 404; a file where a folder is wanted (or
the reverse) is a 409.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (local aliases) as objects

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import Response

from ai4lab.api.answers import Deleted, StorageEntry, StorageListing
from ai4lab.api.auth import HubUser
from ai4lab.api.context import ApiContext, User
from ai4lab.core.errors import PlatformError
from ai4lab.core.storage import UserStorage

T = TypeVar("T")


def _file_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """The file system's own errors as answers: missing 404, of the wrong type 409."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except FileNotFoundError as e:
            raise PlatformError(404, str(e)) from None
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as e:
            raise PlatformError(409, str(e)) from None

    return wrapper


def build_router(api: ApiContext) -> APIRouter:
    router = APIRouter(prefix=f"{api.prefix}/storage", tags=["storage"])

    def storage_for(user: HubUser) -> UserStorage:
        return api.storage(user.name)

    @router.get("", summary="List the root of my storage", response_model=StorageListing)
    @router.get(
        "/{path:path}",
        summary="List a folder or download a file of my storage",
        responses={200: {"model": StorageListing, "content": {"application/octet-stream": {}}}},
    )
    @_file_errors
    async def storage_get(user: User, path: str = "") -> Any:
        store = storage_for(user)
        if not path.strip("/") or store.is_dir(path):
            return {"path": path.strip("/"), "type": "directory", "content": store.listdir(path)}
        return Response(
            store.read(path),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{Path(path).name}"'},
        )

    @router.put("/{path:path}", summary="Upload a file (raw body) to my storage", response_model=StorageEntry)
    @_file_errors
    async def storage_put(path: str, request: Request, user: User) -> dict[str, Any]:
        return storage_for(user).write(path, await request.body())

    @router.post(
        "/{path:path}",
        summary="Upload files (multipart) into a folder, or create a folder",
        response_model=list[StorageEntry],
    )
    @_file_errors
    async def storage_post(path: str, user: User, files: list[UploadFile] | None = None) -> list[dict[str, Any]]:
        store = storage_for(user)
        if not files:
            return [store.mkdir(path)]
        return [store.write(f"{path.strip('/')}/{Path(f.filename or 'upload').name}", await f.read()) for f in files]

    @router.delete("/{path:path}", summary="Delete a file or folder of my storage", response_model=Deleted)
    @_file_errors
    async def storage_delete(path: str, user: User) -> dict[str, str]:
        storage_for(user).delete(path)
        return {"deleted": path}

    return router
