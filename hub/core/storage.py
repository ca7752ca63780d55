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
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec

from ai4lab.core.errors import PlatformError

if TYPE_CHECKING:
    from ai4lab.core.settings import Settings


class StoragePathError(PlatformError, ValueError):
    """A path that points outside the user's storage or is malformed (400: the caller's to fix)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class QuotaExceeded(PlatformError):
    """507: a write that would take the user's storage over what their role allows; nothing of it is kept."""

    def __init__(self, used: int, adding: int, allowed: int) -> None:
        super().__init__(
            507,
            f"storage quota exceeded: {human_size(used)} used, {human_size(adding)} more would go over the "
            f"{human_size(allowed)} your role allows; delete files from your storage or ask an admin for more",
        )
        self.used, self.adding, self.allowed = used, adding, allowed


def human_size(n: float) -> str:
    """``1.5 GB``: sizes in messages and listings people read (powers of 1000, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def local_usage(root: str | os.PathLike[str]) -> int:
    """Bytes of the files under ``root``; symlinks count as themselves, never as what they point to."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # removed while walking
    return total


def storage_quota(settings: Settings, user: str, role: str) -> int | None:
    """Bytes the user may keep in their storage: the role's quota on the platform's storage; None on their own."""
    from ai4lab.core.own_storage import own_backend

    return None if own_backend(settings, user) else settings.quotas[role].storage_bytes


def storage_use(settings: Settings, user: str, role: str) -> dict[str, int | None]:
    """What ``GET /me`` and the admin view show: used and allowed bytes (None for a user's own storage)."""
    allowed = storage_quota(settings, user, role)
    return {"used_bytes": None if allowed is None else open_storage(settings, user).usage(), "allowed_bytes": allowed}


def storage_not_full(settings: Settings, user: str, role: str, what: str) -> None:
    """Refuse a job that writes to the user's storage when it already holds what the quota allows (507)."""
    allowed = storage_quota(settings, user, role)
    if allowed is not None and (used := open_storage(settings, user).usage()) >= allowed:
        raise PlatformError(
            507,
            f"your storage is full ({human_size(used)} of the {human_size(allowed)} your role allows): "
            f"delete files from it before starting a {what}",
        )


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
        return "/".join(p for p in (self.root, clean_relpath(rel)) if p)

    def _name(self, rel: str) -> str:
        """Where the entry ``rel`` itself is: its folder resolved, its last part not followed.

        Why: deleting or moving a symlink acts on the link, never on what it points to
        (which may be outside the storage); only the folder it sits in must be inside.
        """
        rel = clean_relpath(rel)
        if not rel:
            raise StoragePathError("give a path inside your storage, not its root")
        if not self.local:
            return self._full(rel)
        return str(resolve_in_storage(self.root, posixpath.dirname(rel)) / posixpath.basename(rel))

    def usage(self) -> int:
        """Bytes stored: what the quota is measured against."""
        if self.local:
            return local_usage(self.root)
        return int(self.fs.du(self.root)) if self.fs.exists(self.root) else 0

    def size_of(self, rel: str) -> int:
        """Bytes of the file ``rel`` (0 when missing or a folder): what replacing it frees."""
        full = self._full(rel)
        return int(self.fs.size(full) or 0) if self.fs.isfile(full) else 0

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
        mtime = info.get("mtime") or info.get("LastModified") or info.get("modified") or info.get("created")
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
        upload = self.upload(rel)
        try:
            upload.write(data)
            return upload.commit()
        except BaseException:
            upload.abort()
            raise

    def replace(self, src: str, dst: str) -> None:
        """Move ``src`` over ``dst`` (both full paths), replacing a file there in one step where the server can."""
        if self.local:
            os.replace(src, dst)
        elif "webdav" in self.fs.protocol:
            self.fs.client.move(src, dst, overwrite=True)  # webdav4's mv refuses to replace
        else:
            self.fs.mv(src, dst)

    def committed(self, full: str) -> None:
        """Called once an upload is in place (a subclass hands the file over to its owner)."""

    def upload(self, rel: str) -> Upload:
        """A file being written in parts; it replaces ``rel`` only at ``commit``.

        Why: an upload that fails or is refused half-way (quota, a dropped connection)
        must neither truncate the stored file nor leave a partial one under its name.
        """
        rel = clean_relpath(rel)
        if not rel:
            raise StoragePathError("give a file path to write to")
        full = self._full(rel)
        if self.fs.isdir(full):
            raise IsADirectoryError(f"{rel!r} is a folder")
        parent = posixpath.dirname(full)
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        return Upload(self, rel, full)

    def move(self, rel: str, to: str, overwrite: bool = False) -> dict[str, Any]:
        """Rename a file or folder (a symlink is moved as itself); a taken name is refused unless ``overwrite``."""
        src, dst_rel = self._name(rel), clean_relpath(to)
        if not (os.path.lexists(src) if self.local else self.fs.exists(src)):
            raise FileNotFoundError(f"no such file or folder in your storage: {clean_relpath(rel)!r}")
        dst = self._name(dst_rel)
        if dst == src or dst.startswith(src.rstrip("/") + "/"):
            raise StoragePathError(f"cannot move {clean_relpath(rel)!r} into itself")
        if os.path.lexists(dst) if self.local else self.fs.exists(dst):
            if not overwrite or self.fs.isdir(dst):
                raise FileExistsError(f"{dst_rel!r} already exists in your storage")
            if not self.fs.isdir(src):
                self.replace(src, dst)
                return self.info(dst_rel)
            self.fs.rm(dst)
        self.fs.makedirs(posixpath.dirname(dst), exist_ok=True)
        if self.local:
            os.rename(src, dst)  # also a symlink or a folder, in one step
        elif "s3" in self.fs.protocol and self.fs.isdir(src):
            for key in self.fs.find(src):  # an S3 folder is a prefix: each object is copied, then removed
                self.fs.mv(key, dst + key[len(src) :])
        else:
            self.fs.mv(src, dst, recursive=True)
        return (
            self.info(dst_rel) if not (self.local and os.path.islink(dst)) else self._entry({"islink": True}, dst_rel)
        )

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
        if self.local and os.path.islink(link := self._name(rel)):
            os.unlink(link)
            return
        full = self._full(rel)
        if not self.fs.exists(full):
            raise FileNotFoundError(f"no such file or folder in your storage: {rel!r}")
        self.fs.rm(full, recursive=True)


class Upload:
    """One file being uploaded to a temporary name beside its target (see :meth:`UserStorage.upload`)."""

    def __init__(self, store: UserStorage, rel: str, full: str) -> None:
        self.store, self.rel, self.full = store, rel, full
        # an S3 object is replaced whole when its upload completes, and an upload discarded leaves nothing:
        # no temporary name (a copy and a delete more) is needed there
        self.direct = "s3" in store.fs.protocol
        self.tmp = full if self.direct else f"{full}.ai4lab-upload-{secrets.token_hex(4)}"
        self.size = 0
        self.file = store.fs.open(self.tmp, "wb")

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    def commit(self) -> dict[str, Any]:
        self.file.close()
        if not self.direct:
            self.store.replace(self.tmp, self.full)
        self.store.committed(self.full)
        return self.store.info(self.rel)

    def abort(self) -> None:
        """Drop what was written; the stored file (if any) is left as it was."""
        if self.direct:
            self.file.discard()
            return
        self.file.close()
        if self.store.fs.exists(self.tmp):
            self.store.fs.rm(self.tmp)


def chunks_of(file: Any, size: int = 1 << 20) -> Iterator[bytes]:
    """A file read in parts (downloads are streamed, never read whole into memory)."""
    with file:
        while data := file.read(size):
            yield data


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

    def upload(self, rel: str) -> Upload:
        created = self._missing(posixpath.dirname(self._full(rel)))
        upload = super().upload(rel)
        self._hand_over(upload.full, created)
        return upload

    def committed(self, full: str) -> None:
        self._hand_over(full, [])

    def move(self, rel: str, to: str, overwrite: bool = False) -> dict[str, Any]:
        created = self._missing(posixpath.dirname(self._name(to)))
        info = super().move(rel, to, overwrite)
        self._hand_over(self._name(to), created)
        return info

    def mkdir(self, rel: str) -> dict[str, Any]:
        full = self._full(rel)
        created = self._missing(full)
        info = super().mkdir(rel)
        self._hand_over(full, created)
        return info


def open_storage(settings: Settings, user: str, ident: Any = None) -> UserStorage:
    """``user``'s storage as the platform API reaches it: their folder, or the remote server configured.

    ``ident`` (the user's system account): files the platform writes to a local folder are handed to it.
    """
    from ai4lab.core.own_storage import backend_for

    backend = backend_for(settings, user)
    if backend.remote:
        return UserStorage(*backend.fsspec(user))
    url = f"file://{settings.user_storage(user)}"
    return OwnedStorage(url, {}, ident) if ident is not None else UserStorage(url, {})
