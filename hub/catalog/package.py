"""A module's source package: where it really is, and as a tarball to open in an IDE."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from ai4lab.core.settings import Settings
from ai4lab.core.storage import resolve_in_storage

PACKAGE_SKIP = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache", ".mypy_cache"}


def package_folder(settings: Settings, path: Path) -> Path:
    """The real folder of a module's package; StoragePathError when a published one left its owner's storage.

    Why: a published package stays in its owner's storage (``storage/<owner>/...``),
    where the owner can later replace the folder, or a part of it, by a symlink to
    files of the platform. Packages elsewhere (bundled, from catalog sources) are
    the operator's and are used as they are.
    """
    where = Path(os.path.abspath(path))
    for storage in (Path(os.path.abspath(settings.storage_root)), Path(os.path.realpath(settings.storage_root))):
        if storage in where.parents:  # the storage folder may itself be reached through a link
            owner, *rest = where.relative_to(storage).parts
            return resolve_in_storage(storage / owner, "/".join(rest))
    return path


def package_tarball(folder: Path) -> bytes:
    """A module's source folder as .tar.gz, without caches and virtual environments."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if PACKAGE_SKIP & set(parts) or info.name.endswith(".pyc") else info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name, filter=keep)
    return buf.getvalue()
