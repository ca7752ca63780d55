"""Catalog sources that admins add while the platform runs (``ai4lab catalog add-source``, the admin view).

Why a file of its own: the settings file is the operator's, and adding a
module from git should not need editing YAML nor a restart. The file lives in
the state folder; the catalog re-reads it when it changes, so the command
line and the running platform agree. A source is one module or tool
repository (cloned with its code, so it runs here) or an AI4OS catalog
repository (``.gitmodules`` with one repository per item), told apart by
what the repository holds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from pydantic import ValidationError

from ai4lab.catalog.metadata import find_metadata_file
from ai4lab.catalog.sources import shallow_clone
from ai4lab.core.errors import PlatformError
from ai4lab.core.settings import Settings, SourceConfig

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def sources_file(settings: Settings) -> Path:
    return settings.state / "catalog-sources.json"


def read(path: Path) -> list[SourceConfig]:
    """The added sources; a damaged file counts as none (the settings' sources still load)."""
    try:
        return [SourceConfig(**raw) for raw in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError, ValidationError):
        return []


def _write(path: Path, sources: list[SourceConfig]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([s.model_dump(exclude_defaults=True) for s in sources], f, indent=1)
    tmp.replace(path)


def detect(name: str, url: str, branch: str | None = None, kind: str | None = None) -> SourceConfig:
    """The source for a git URL: ``repo`` when its root has AI4OS metadata, ``git`` when it lists submodules.

    Clones it once (shallow) to look; PlatformError with git's reason when it cannot.
    """
    if not NAME_RE.match(name):
        raise PlatformError(400, f"invalid source name {name!r}: use lower-case letters, digits, '.', '_' or '-'")
    if kind not in (None, "module", "tool"):
        raise PlatformError(400, f"kind must be module or tool, not {kind!r}")
    work = Path(tempfile.mkdtemp(prefix="ai4lab-source-"))
    try:
        try:
            shallow_clone(url, branch, work / "repo", timeout=300)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            raise PlatformError(400, f"cannot clone {url}: {e}") from None
        if find_metadata_file(work / "repo") is not None:
            return SourceConfig(name=name, type="repo", url=url, branch=branch, kind=kind)
        if (work / "repo" / ".gitmodules").is_file():
            guessed = kind or ("tool" if "tool" in url.rsplit("/", 1)[-1] else "module")
            return SourceConfig(name=name, type="git", url=url, branch=branch, kind=guessed)
        raise PlatformError(
            400,
            f"{url} is neither a module repository (no ai4-metadata.yml at its root) nor an AI4OS "
            "catalog (no .gitmodules)",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add(settings: Settings, cfg: SourceConfig) -> None:
    path = sources_file(settings)
    added = read(path)
    taken = {s.name for s in settings.catalog_sources} | {s.name for s in added} | {"published"}
    if cfg.name in taken:
        raise PlatformError(409, f"a catalog source named {cfg.name!r} exists already")
    _write(path, [*added, cfg])


def remove(settings: Settings, name: str) -> SourceConfig:
    path = sources_file(settings)
    added = read(path)
    found = next((s for s in added if s.name == name), None)
    if found is None:
        configured = any(s.name == name for s in settings.catalog_sources)
        raise PlatformError(
            400 if configured else 404,
            f"{name!r} is set in the settings file: remove it there"
            if configured
            else f"no added catalog source {name!r}",
        )
    _write(path, [s for s in added if s.name != name])
    shutil.rmtree(settings.catalog_cache / name, ignore_errors=True)
    return found
