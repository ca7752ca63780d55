"""Publishing a user's module or tool into the catalog (private, VO, or public once promoted)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ai4lab.catalog import metadata as md
from ai4lab.core.db import PublishedItem, session_scope
from ai4lab.core.errors import PlatformError

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,99}$")
PUBLISH_ROLES = ("intermediate", "advanced")


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="item id: lower-case letters, digits, '.', '_', '-'")
    metadata: dict[str, Any] | None = Field(default=None, description="AI4OS metadata (v2) as JSON")
    metadata_yaml: str | None = Field(default=None, description="or the ai4-metadata.yml text")
    package_path: str | None = Field(
        default=None, description="folder in your storage holding the module's Python package"
    )
    git_url: str | None = Field(
        default=None,
        description="or the git URL of the module's repository (cloned as you; its "
        "ai4-metadata.yml is the metadata when none is given)",
    )
    git_ref: str | None = Field(default=None, description="git_url: branch or tag (default: the default branch)")
    docker_image: str | None = Field(default=None, description="container image (with tag) for clusters")
    visibility: str = Field(default="private", description="private or vo (public needs an admin)")
    lineage: dict[str, Any] = Field(
        default_factory=dict, description="where it comes from: parent module, dataset, MLflow run ..."
    )


def copy_package(src: Path, packages_root: Path, item_id: str, owner_ids: tuple[int, int] | None) -> Path:
    """A copy of a published package in the platform's catalog area, owned by its publisher.

    Why a copy: the catalog must not change when the publisher edits (or
    replaces with a link) the folder in their storage, and the platform must
    never follow a link out of it. Links are left out of the copy. The copy
    belongs to the publisher, which is how environment builds know to run the
    package's build code as them (``ai4lab.core.envs.builder_of``).
    """
    from ai4lab.core.isolation import chown_tree

    packages_root.mkdir(parents=True, exist_ok=True)
    os.chmod(packages_root, 0o700)
    work = Path(tempfile.mkdtemp(prefix=f".{item_id}-", dir=packages_root))
    try:
        copy = work / "package"
        shutil.copytree(src, copy, ignore=_links_and_by_products)
        digest = hashlib.sha256()
        for f in sorted(p for p in copy.rglob("*") if p.is_file()):
            digest.update(f.relative_to(copy).as_posix().encode() + b"\0" + f.read_bytes())
        target = packages_root / f"{item_id}-{digest.hexdigest()[:16]}"
        if owner_ids is not None:
            chown_tree(copy, *owner_ids)
        if target.exists():
            shutil.rmtree(target)
        os.rename(copy, target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _links_and_by_products(folder: str, names: list[str]) -> set[str]:
    skip = {"__pycache__", ".git", ".venv", "node_modules", "build", "dist"}
    return {n for n in names if n in skip or n.endswith(".egg-info") or os.path.islink(os.path.join(folder, n))}


def clone_as(ident: Any, url: str, ref: str | None) -> tuple[Path, str]:
    """A shallow clone of ``url`` made by the publisher's own account (``<tmp>/repo``) and its commit.

    PlatformError with git's reason when it cannot be cloned.

    Why as the publisher: a ``file://`` URL (or a local path) is read with
    their rights, not the platform's, so nobody publishes a copy of files
    they could not read.
    """
    from ai4lab.core import isolation

    work = Path(tempfile.mkdtemp(prefix="ai4lab-publish-"))
    isolation.give(work, ident, 0o700)
    # a global config in the clone's own HOME: a local repository of someone else is read (by git's
    # upload-pack too, which drops GIT_CONFIG_* variables) with the publisher's rights, which is the point
    (work / ".gitconfig").write_text("[safe]\n\tdirectory = *\n")
    isolation.give(work / ".gitconfig", ident, 0o600)
    env = isolation.user_env(ident, work, {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"})
    try:
        proc = isolation.run(
            ident,
            ["git", "clone", "-q", "--depth", "1", *(["--branch", ref] if ref else []), "--", url, str(work / "repo")],
            env=env,
            cwd=work,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(work, ignore_errors=True)
        raise PlatformError(400, f"git_url: cannot clone {url}: {e}") from None
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = next((ln for ln in lines if ln.startswith("fatal:")), lines[0] if lines else "git failed")
        raise PlatformError(400, f"git_url: cannot clone {url}: {reason}")
    commit = isolation.run(
        ident, ["git", "-C", str(work / "repo"), "rev-parse", "HEAD"], env=env, cwd=work, timeout=60
    ).stdout.strip()
    return work / "repo", commit


def from_clone(req: PublishRequest, clone: Path, commit: str, uid: int) -> PublishRequest:
    """The request for a repository cloned from ``git_url``: its metadata file when none was given, and where it
    came from.

    ``uid``: the publisher's, who wrote the clone; its files are read without following links.
    """
    from ai4lab.core.isolation import read_written_by

    update: dict[str, Any] = {"package_path": "(git)"}
    if req.metadata is None and req.metadata_yaml is None:
        found = md.find_metadata_file(clone)
        try:
            update["metadata_yaml"] = read_written_by(found, uid, 2**20).decode(errors="replace") if found else None
        except OSError:
            found = None
        if found is None:
            raise PlatformError(
                400,
                f"git_url: no {' or '.join(md.METADATA_FILES)} at the root of {req.git_url}: "
                "give metadata or metadata_yaml",
            )
    update["lineage"] = {**req.lineage, "git_url": req.git_url, "git_commit": commit}
    return req.model_copy(update=update)


def symlinks_in(folder: Path) -> list[Path]:
    """Every symlink inside ``folder`` (not followed), for the caller to check where each leads."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            if os.path.islink(os.path.join(dirpath, name)):
                found.append(Path(dirpath, name))
    return found


def publish(
    db_url: str,
    req: PublishRequest,
    *,
    kind: str,
    owner: str,
    role: str,
    vo: str | None,
    resolve_package: Any,
    existing_ids: set[str],
    packages_root: Path | None = None,
    owner_ids: tuple[int, int] | None = None,
) -> PublishedItem:
    """Validate and store; ``resolve_package(path) -> Path`` maps a storage path to a local folder.

    With ``packages_root``, the package is copied there (see :func:`copy_package`) after its checks.
    """
    if role not in PUBLISH_ROLES:
        raise PlatformError(403, f"publishing needs role intermediate or advanced; yours is {role}")
    if not ID_RE.match(req.id):
        raise PlatformError(400, f"invalid id {req.id!r}: use 2-100 lower-case letters, digits, '.', '_' or '-'")
    if req.visibility not in ("private", "vo"):
        raise PlatformError(400, "visibility must be 'private' or 'vo'; an admin promotes items to public")
    if req.visibility == "vo" and not vo:
        raise PlatformError(400, "you belong to no VO: publish as private")
    if (req.metadata is None) == (req.metadata_yaml is None):
        raise PlatformError(400, "give exactly one of metadata (JSON) or metadata_yaml (text)")
    data = req.metadata if req.metadata is not None else md.parse_text(req.metadata_yaml or "", "ai4-metadata.yml")
    try:
        data = md.validate(data)
    except md.MetadataError as e:
        raise PlatformError(400, f"invalid metadata: {e}") from None
    package: Path | None = None
    if req.package_path:
        package = resolve_package(req.package_path)
        if not (package / "pyproject.toml").is_file() and not (package / "setup.py").is_file():
            raise PlatformError(400, f"{req.package_path!r} holds no Python package (no pyproject.toml or setup.py)")
        try:
            md.to_item(data, item_id=req.id, kind=kind, source="published", package_path=package)  # type: ignore[arg-type]
        except md.MetadataError as e:
            raise PlatformError(400, str(e)) from None
    if not package and not req.docker_image and not (data.get("links") or {}).get("docker_image"):
        raise PlatformError(400, "say how to run it: package_path, docker_image or links.docker_image in the metadata")
    with session_scope(db_url) as db:
        row = db.get(PublishedItem, req.id)
        if row is not None and row.owner != owner:
            raise PlatformError(409, f"id {req.id!r} is taken by another user's item")
        if row is None and req.id in existing_ids:
            raise PlatformError(409, f"id {req.id!r} is already in the catalog: choose another")
        if row is None:
            row = PublishedItem(id=req.id, kind=kind, owner=owner)
            db.add(row)
        elif row.kind != kind:
            raise PlatformError(409, f"{req.id!r} is a {row.kind}, not a {kind}")
        row.vo = vo
        row.visibility = req.visibility
        row.item_metadata = data
        if package is not None and packages_root is not None:  # after the checks: a refusal copies nothing
            package = copy_package(package, packages_root, req.id, owner_ids)
        row.package_path = str(package) if package else None
        row.docker_image = req.docker_image
        row.lineage = req.lineage
        return row


def set_visibility(db_url: str, item_id: str, visibility: str) -> PublishedItem | None:
    if visibility not in ("private", "vo", "public"):
        raise PlatformError(400, "visibility must be private, vo or public")
    with session_scope(db_url) as db:
        row = db.get(PublishedItem, item_id)
        if row is not None:
            row.visibility = visibility
        return row


def unpublish(db_url: str, item_id: str) -> bool:
    with session_scope(db_url) as db:
        row = db.get(PublishedItem, item_id)
        if row is None:
            return False
        db.delete(row)
        return True


def metadata_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
