"""Per-user storage addressed through fsspec: a local folder by default, S3 or WebDAV when configured.

Every path a user gives is relative to their own root; ``..``, absolute paths
and other escapes are refused before any file system call is made.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec


class StoragePathError(ValueError):
    """A path that points outside the user's storage or is malformed."""


def clean_relpath(path: str) -> str:
    """The normalised relative path, or StoragePathError saying why it is refused."""
    if "\x00" in path:
        raise StoragePathError("path contains a NUL byte")
    if path.startswith("/") or path.startswith("\\") or (len(path) > 1 and path[1] == ":"):
        raise StoragePathError(f"absolute paths are not allowed: {path!r}; give a path inside your storage")
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StoragePathError(f"'..' is not allowed in storage paths: {path!r}")
    return "/".join(parts)


@dataclass
class UserStorage:
    """One user's storage: ``root_url`` is e.g. ``file:///srv/state/storage/alice`` or ``s3://bucket/alice``."""

    root_url: str
    options: dict[str, Any]

    def __post_init__(self) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(self.root_url, **self.options)
        self.root = self.root.rstrip("/")

    def _full(self, rel: str) -> str:
        rel = clean_relpath(rel)
        return f"{self.root}/{rel}" if rel else self.root

    def ensure_root(self) -> None:
        if self.fs.protocol in ("file", ("file", "local")) or "file" in self.fs.protocol:
            self.fs.makedirs(self.root, exist_ok=True)

    def info(self, rel: str) -> dict[str, Any]:
        full = self._full(rel)
        try:
            info = self.fs.info(full)
        except FileNotFoundError:
            raise FileNotFoundError(f"no such file or folder in your storage: {clean_relpath(rel)!r}") from None
        return self._entry(info)

    def _entry(self, info: dict[str, Any]) -> dict[str, Any]:
        name = info["name"].rstrip("/")
        rel = name[len(self.root) :].lstrip("/") if name.startswith(self.root) else posixpath.basename(name)
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
        if isinstance(mtime, (int, float)):
            mtime = datetime.fromtimestamp(mtime).isoformat()
        elif isinstance(mtime, datetime):
            mtime = mtime.isoformat()
        return {
            "path": rel,
            "name": posixpath.basename(rel) if rel else "",
            "type": "directory" if info.get("type") == "directory" else "file",
            "size": info.get("size") or 0,
            "modified": mtime,
        }

    def listdir(self, rel: str = "") -> list[dict[str, Any]]:
        full = self._full(rel)
        if not self.fs.exists(full):
            if not clean_relpath(rel):
                return []
            raise FileNotFoundError(f"no such folder in your storage: {clean_relpath(rel)!r}")
        return sorted(
            (self._entry(i) for i in self.fs.ls(full, detail=True) if i["name"].rstrip("/") != full),
            key=lambda e: (e["type"] != "directory", e["name"]),
        )

    def is_dir(self, rel: str) -> bool:
        return self.fs.isdir(self._full(rel))

    def read(self, rel: str) -> bytes:
        full = self._full(rel)
        if not self.fs.isfile(full):
            raise FileNotFoundError(f"no such file in your storage: {clean_relpath(rel)!r}")
        return self.fs.cat_file(full)

    def open(self, rel: str, mode: str = "rb") -> Any:
        return self.fs.open(self._full(rel), mode)

    def write(self, rel: str, data: bytes) -> dict[str, Any]:
        rel = clean_relpath(rel)
        if not rel:
            raise StoragePathError("give a file path to write to")
        full = self._full(rel)
        if self.fs.isdir(full):
            raise IsADirectoryError(f"{rel!r} is a folder")
        parent = posixpath.dirname(full)
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        # write to a temporary name first so that a failed upload never truncates a stored file
        tmp = f"{full}.ai4lab-upload"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, full)
        return self.info(rel)

    def mkdir(self, rel: str) -> dict[str, Any]:
        rel = clean_relpath(rel)
        full = self._full(rel)
        self.fs.makedirs(full, exist_ok=True)
        if not self.fs.isdir(full):
            # object stores have no empty folders: a marker object makes the prefix exist
            self.fs.touch(f"{full}/.keep")
        return self.info(rel)

    def delete(self, rel: str) -> None:
        rel = clean_relpath(rel)
        if not rel:
            raise StoragePathError("refusing to delete the storage root")
        full = self._full(rel)
        if not self.fs.exists(full):
            raise FileNotFoundError(f"no such file or folder in your storage: {rel!r}")
        self.fs.rm(full, recursive=True)


class OwnedStorage(UserStorage):
    """Local storage whose new files and folders belong to the user's system account.

    Why: the platform API runs as root, but a user's storage is theirs: the
    files it uploads must be readable by that user's sessions and jobs (and
    by nobody else), so each file and folder it creates is handed over.
    """

    def __init__(self, root_url: str, options: dict[str, Any], ident: Any) -> None:
        super().__init__(root_url, options)
        self.ident = ident

    def _hand_over(self, full: str, created: list[str]) -> None:
        from ai4lab.isolation import give

        for path in [*created, full]:
            if os.path.lexists(path):
                give(Path(path), self.ident)

    def _missing(self, full: str) -> list[str]:
        """Folders between the root and ``full`` that do not exist yet, outermost first."""
        missing: list[str] = []
        p = full
        while p.startswith(self.root + "/") and not os.path.lexists(p):
            missing.append(p)
            p = posixpath.dirname(p)
        return list(reversed(missing))

    def ensure_root(self) -> None:
        from ai4lab.isolation import private_dir

        private_dir(Path(self.root), self.ident, Path(self.root).parent)

    def write(self, rel: str, data: bytes) -> dict[str, Any]:
        full = self._full(rel)
        created = self._missing(posixpath.dirname(full))
        info = super().write(rel, data)
        self._hand_over(full, created)
        return info

    def mkdir(self, rel: str) -> dict[str, Any]:
        full = self._full(rel)
        created = self._missing(full)
        info = super().mkdir(rel)
        self._hand_over(full, created)
        return info
