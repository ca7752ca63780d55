"""Per-user storage addressed through fsspec: a local folder by default, S3 or WebDAV when configured.

Every path a user gives is relative to their own root; ``..``, absolute paths
and other escapes are refused before any file system call is made. On a local
folder the user can also place symlinks (from a session, a terminal, a
training), so a clean name is not enough there: :func:`resolve_in_storage`
resolves the real location and refuses one outside the real root. Every code
path that opens a user's storage by file path goes through that one function.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec

from ai4lab.core.errors import PlatformError


class StoragePathError(PlatformError, ValueError):
    """A path that points outside the user's storage or is malformed (400: the caller's to fix)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


def clean_relpath(path: str) -> str:
    """The normalised relative path, or StoragePathError saying why it is refused."""
    if "\x00" in path:
        raise StoragePathError("path contains a NUL byte")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise StoragePathError(f"absolute paths are not allowed: {path!r}; give a path inside your storage")
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StoragePathError(f"'..' is not allowed in storage paths: {path!r}")
    return "/".join(parts)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_in_storage(root: str | os.PathLike[str], path: str) -> Path:
    """The real location of ``path`` (relative to the local folder ``root``), or StoragePathError.

    Why: the platform process reads and writes users' storage with more rights
    than the users have (the state folder, other users' storage, secrets.json),
    so a symlink in a user's storage pointing elsewhere must not be followed.
    The path is refused when its real location is outside the real root. A
    path that does not exist yet (a file about to be written, a folder about to
    be made) keeps its missing tail as given, so what is compared is the real
    location of the folder it would be created in. Callers use the returned
    path, not the name they were given, so that what was checked is what is
    opened. A symlink that cannot be resolved (a loop) is refused as well.
    """
    rel = clean_relpath(path)
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root, rel)) if rel else real_root
    if not _inside(real, real_root):
        raise StoragePathError(f"{rel!r} leaves your storage through a symlink")
    # realpath leaves a symlink loop unresolved: the name then still is a link
    probe = real
    while _inside(probe, real_root) and probe != real_root:
        if os.path.islink(probe):
            raise StoragePathError(f"{rel!r} goes through a symlink that cannot be resolved")
        probe = os.path.dirname(probe)
    return Path(real)


def in_user_storage(root: str | os.PathLike[str], path: str, what: str = "path") -> Path:
    """The real location of ``path`` (a ``storage/`` prefix is optional) in the user storage ``root``.

    The one way the platform joins a path a user gave to their storage: every
    request field naming a dataset, an output folder, weights or a package comes
    through here, and a refusal names the field (``dataset: 'x' leaves your storage ...``).
    """
    try:
        return resolve_in_storage(root, path.removeprefix("storage/"))
    except StoragePathError as e:
        raise StoragePathError(f"{what}: {e}") from None


@dataclass
class UserStorage:
    """One user's storage: ``root_url`` is e.g. ``file:///srv/state/storage/alice`` or ``s3://bucket/alice``."""

    root_url: str
    options: dict[str, Any]

    def __post_init__(self) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(self.root_url, **self.options)
        protocol = self.fs.protocol
        self.local = "file" in ((protocol,) if isinstance(protocol, str) else protocol)
        # local: the real root, so that resolved paths and the root compare as strings
        self.root = os.path.realpath(self.root) if self.local else self.root.rstrip("/")

    def _full(self, rel: str) -> str:
        if self.local:
            return str(resolve_in_storage(self.root, rel))
        rel = clean_relpath(rel)
        return f"{self.root}/{rel}" if rel else self.root

    def ensure_root(self) -> None:
        if self.local:
            self.fs.makedirs(self.root, exist_ok=True)

    def info(self, rel: str) -> dict[str, Any]:
        full = self._full(rel)
        try:
            info = self.fs.info(full)
        except FileNotFoundError:
            raise FileNotFoundError(f"no such file or folder in your storage: {clean_relpath(rel)!r}") from None
        return self._entry(info, clean_relpath(rel))

    def _entry(self, info: dict[str, Any], rel: str) -> dict[str, Any]:
        """What a listing shows of one entry; ``rel`` is the path the user knows it by."""
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
        if isinstance(mtime, (int, float)):
            # the machine's wall-clock time, without an offset (as the listing always showed it)
            mtime = datetime.fromtimestamp(mtime).isoformat()  # noqa: DTZ006
        elif isinstance(mtime, datetime):
            mtime = mtime.isoformat()
        kind = "directory" if info.get("type") == "directory" else "file"
        size = info.get("size") or 0
        if self.local and info.get("islink"):
            # a link is shown as what it points to only when that is inside the storage:
            # the size or type of a file elsewhere is not the user's to know
            try:
                kind = "directory" if resolve_in_storage(self.root, rel).is_dir() else "file"
            except StoragePathError:
                kind, size = "symlink", 0
        return {
            "path": rel,
            "name": posixpath.basename(rel) if rel else "",
            "type": kind,
            "size": size,
            "modified": mtime,
        }

    def listdir(self, rel: str = "") -> list[dict[str, Any]]:
        full = self._full(rel)
        rel = clean_relpath(rel)
        if not self.fs.exists(full):
            if not rel:
                return []
            raise FileNotFoundError(f"no such folder in your storage: {rel!r}")
        entries = []
        for info in self.fs.ls(full, detail=True):
            name = posixpath.basename(info["name"].rstrip("/"))
            if info["name"].rstrip("/") != full.rstrip("/"):
                entries.append(self._entry(info, f"{rel}/{name}" if rel else name))
        return sorted(entries, key=lambda e: (e["type"] != "directory", e["name"]))

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
        """Delete a file or a folder with everything in it.

        A symlink (also one pointing outside) is removed itself, never what it
        points to: only the folder it sits in has to be inside the storage.
        """
        rel = clean_relpath(rel)
        if not rel:
            raise StoragePathError("refusing to delete the storage root")
        if self.local:
            parent = resolve_in_storage(self.root, posixpath.dirname(rel))
            link = parent / posixpath.basename(rel)
            if link.is_symlink():
                link.unlink()
                return
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
        from ai4lab.core.isolation import give

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
        from ai4lab.core.isolation import private_dir

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
