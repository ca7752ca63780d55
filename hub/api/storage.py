"""``/storage``: the caller's own storage: list, download, upload, make folders, rename, delete.

Every path goes through the storage's resolver (``ai4lab.core.storage``): a
path or a symlink that leaves the user's storage is a 400, as is any other
malformed path; a missing file is a 404; a file where a folder is wanted (or
the reverse), or a taken name, is a 409. Uploads are streamed to a temporary
name and counted against the role's storage quota as they arrive: one that
would go over it is a 507 saying what is used and allowed, and leaves nothing.
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (local aliases) as objects

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ai4lab.api.answers import Deleted, StorageEntry, StorageListing
from ai4lab.api.auth import HubUser
from ai4lab.api.context import ApiContext, User
from ai4lab.core.errors import PlatformError
from ai4lab.core.storage import QuotaExceeded, UserStorage, chunks_of, storage_quota

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


class StorageMove(BaseModel):
    """Rename or move a file or folder within my storage."""

    model_config = ConfigDict(extra="forbid")
    to: str = Field(description="the new path, inside my storage")
    overwrite: bool = Field(default=False, description="replace a file already there (never a folder)")


DRAIN_BYTES = 64 << 20


async def _drain(parts: AsyncIterator[bytes]) -> None:
    """Read and drop the rest of a refused upload (up to 64 MiB), so that the client, still sending, gets
    the answer saying why instead of a reset connection; a larger one is cut off."""
    dropped = 0
    async for data in parts:
        dropped += len(data)
        if dropped > DRAIN_BYTES:
            return


async def _stream(file: Any) -> AsyncIterator[bytes]:
    parts = chunks_of(file)
    while (data := await asyncio.to_thread(next, parts, None)) is not None:
        yield data


def build_router(api: ApiContext) -> APIRouter:
    router = APIRouter(prefix=f"{api.prefix}/storage", tags=["storage"])

    async def storage_for(user: HubUser) -> UserStorage:
        """Off the event loop: an S3 or WebDAV storage answers over the network."""
        return await asyncio.to_thread(api.storage, user.name)

    async def budget(user: HubUser, store: UserStorage, replaced: int = 0) -> tuple[int, int]:
        """What is used and what may still be written (``replaced``: bytes a write frees by replacing a file)."""
        allowed = await asyncio.to_thread(storage_quota, api.settings, user.name, api.caller(user).role)
        if allowed is None:  # the user's own storage: its server decides
            return 0, 1 << 62
        used = await asyncio.to_thread(store.usage)
        return used, allowed - used + replaced

    async def receive(store: UserStorage, path: str, parts: AsyncIterator[bytes], used: int, left: int) -> Any:
        """Write ``parts`` to ``path``; over the quota, the upload is dropped and nothing is left."""
        upload = await asyncio.to_thread(store.upload, path)
        try:
            async for data in parts:
                if upload.size + len(data) > left:
                    await _drain(parts)
                    raise QuotaExceeded(used, upload.size + len(data), used + left)
                await asyncio.to_thread(upload.write, data)
            return await asyncio.to_thread(upload.commit)
        except BaseException:
            await asyncio.to_thread(upload.abort)
            raise

    @router.get("", summary="List the root of my storage", response_model=StorageListing)
    @router.get(
        "/{path:path}",
        summary="List a folder or download a file of my storage",
        responses={200: {"model": StorageListing, "content": {"application/octet-stream": {}}}},
    )
    @_file_errors
    async def storage_get(user: User, path: str = "") -> Any:
        store = await storage_for(user)
        if not path.strip("/") or await asyncio.to_thread(store.is_dir, path):
            return {
                "path": path.strip("/"),
                "type": "directory",
                "content": await asyncio.to_thread(store.listdir, path),
            }
        info = await asyncio.to_thread(store.info, path)
        return StreamingResponse(
            _stream(await asyncio.to_thread(store.open, path)),
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{Path(path).name}"',
                "Content-Length": str(info["size"]),
            },
        )

    @router.put("/{path:path}", summary="Upload a file (raw body, streamed) to my storage", response_model=StorageEntry)
    @_file_errors
    async def storage_put(path: str, request: Request, user: User) -> dict[str, Any]:
        store = await storage_for(user)
        used, left = await budget(user, store, await asyncio.to_thread(store.size_of, path))
        declared = int(request.headers.get("content-length") or 0)
        if declared > left:
            await _drain(request.stream())
            raise QuotaExceeded(used, declared, used + left)
        info: dict[str, Any] = await receive(store, path, request.stream(), used, left)
        return info

    @router.patch("/{path:path}", summary="Rename or move a file or folder of my storage", response_model=StorageEntry)
    @_file_errors
    async def storage_move(path: str, move: StorageMove, user: User) -> dict[str, Any]:
        return await asyncio.to_thread((await storage_for(user)).move, path, move.to, move.overwrite)

    @router.post(
        "/{path:path}",
        summary="Upload files (multipart) into a folder, or create a folder",
        response_model=list[StorageEntry],
    )
    @_file_errors
    async def storage_post(path: str, user: User, files: list[UploadFile] | None = None) -> list[dict[str, Any]]:
        store = await storage_for(user)
        if not files:
            return [await asyncio.to_thread(store.mkdir, path)]
        targets = [f"{path.strip('/')}/{Path(f.filename or 'upload').name}" for f in files]
        replaced = sum([await asyncio.to_thread(store.size_of, t) for t in targets])
        used, left = await budget(user, store, replaced)
        adding = sum(f.size or 0 for f in files)
        if adding > left:  # all or none: checked before the first file is written
            raise QuotaExceeded(used, adding, used + left)
        written = []
        for target, f in zip(targets, files, strict=True):
            written.append(await receive(store, target, _stream(f.file), used, left))
            left -= written[-1]["size"]
        return written

    @router.delete("/{path:path}", summary="Delete a file or folder of my storage", response_model=Deleted)
    @_file_errors
    async def storage_delete(path: str, user: User) -> dict[str, str]:
        await asyncio.to_thread((await storage_for(user)).delete, path)
        return {"deleted": path}

    return router
