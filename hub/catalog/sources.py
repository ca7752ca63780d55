"""Where catalog items come from: folders (bundled, local) and remote catalogs in the AI4OS layout.

A remote catalog is a git repository whose ``.gitmodules`` lists one repository
per item, each with ``ai4-metadata.yml`` at its root (ai4os-hub/modules-catalog,
ai4os/tools-catalog). Remote sources are cached on disk: a refresh that fails
keeps the last good copy and reports the error, so a source that is down never
empties the catalog.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import httpx

from ai4lab.catalog.metadata import (
    LEGACY_FILE,
    METADATA_FILES,
    MetadataError,
    find_metadata_file,
    load_folder,
    parse_text,
    to_item,
    validate,
)
from ai4lab.catalog.model import KINDS, CatalogItem, ItemError, Kind
from ai4lab.core.settings import SourceConfig


@dataclass
class LoadResult:
    items: list[CatalogItem] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    fetched_at: float | None = None


def _kind_folders(root: Path, kind: Kind | None) -> list[tuple[Kind, Path]]:
    if kind is not None:
        return [(kind, root)]
    return [(k, root / folder) for folder, k in KINDS.items() if (root / folder).is_dir()]


def load_folder_source(cfg: SourceConfig) -> LoadResult:
    """Every subfolder with metadata is an item; a broken one is an error entry, not a crash."""
    result = LoadResult(fetched_at=time.time())
    root = Path(cfg.path or "").expanduser()
    if not root.is_dir():
        result.errors.append(ItemError(source=cfg.name, item="*", reason=f"folder not found: {root}"))
        return result
    for kind, folder in _kind_folders(root, cfg.kind):
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                result.items.append(load_folder(sub, kind=kind, source=cfg.name))
            except MetadataError as e:
                result.errors.append(ItemError(source=cfg.name, item=sub.name, reason=str(e), location=str(sub)))
    return result


# -- remote catalogs -----------------------------------------------------------------


@dataclass
class Submodule:
    name: str
    url: str
    branch: str | None

    @property
    def org_repo(self) -> tuple[str, str]:
        parts = [p for p in urlparse(self.url).path.split("/") if p]
        repo = parts[-1].removesuffix(".git") if parts else self.name
        org = parts[-2] if len(parts) > 1 else ""
        return org, repo


def item_id_of(submodule_name: str) -> str:
    """Item ids are URL path segments: a submodule kept in a folder ('modules/x') is item 'x'."""
    return submodule_name.rstrip("/").rsplit("/", 1)[-1]


def parse_gitmodules(text: str) -> list[Submodule]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    subs = []
    for section in parser.sections():
        if not section.startswith("submodule "):
            continue
        name = section.removeprefix("submodule ").strip().strip('"')
        sec = parser[section]
        if "url" not in sec:
            continue
        subs.append(Submodule(name=name, url=sec["url"].strip(), branch=(sec.get("branch") or "").strip() or None))
    return subs


def _git(*args: str, cwd: Path | None = None, timeout: float = 120) -> str:
    r = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": tempfile.gettempdir()},
    )
    if r.returncode != 0:
        lines = [ln.strip() for ln in r.stderr.strip().splitlines() if ln.strip()]
        fatal = [ln for ln in lines if ln.startswith("fatal:")]
        raise RuntimeError((fatal or lines or [f"git {args[0]} failed"])[0])
    return r.stdout


def _git_read_file(url: str, branch: str | None, names: tuple[str, ...], work: Path) -> tuple[str, str]:
    """Shallow-fetch one commit of a repo and read the first of ``names`` in it: (name, text)."""
    repo = work / "repo"
    _git("init", "-q", str(repo))
    ref = branch or "HEAD"
    _git("fetch", "-q", "--depth", "1", "--filter=blob:none", url, ref, cwd=repo)
    listing = set(_git("ls-tree", "--name-only", "FETCH_HEAD", cwd=repo).split())
    for name in names:
        if name in listing:
            return name, _git("show", f"FETCH_HEAD:{name}", cwd=repo)
    raise FileNotFoundError(f"no {' or '.join(names)} at the root of {url} ({ref})")


def kind_of(data: dict[str, Any]) -> Kind:
    """A repository's kind from its metadata: a tool when its categories say "AI4 tools", else a module."""
    return "tool" if "AI4 tools" in (data.get("categories") or []) else "module"


def repo_item_id(url: str) -> str:
    """The item id of a module repository: its name, as AI4OS ids are (``.../ai4os-demo-app.git``)."""
    name = [p for p in urlparse(url).path.split("/") if p][-1:] or ["module"]
    return re.sub(r"[^a-z0-9._-]+", "-", name[0].removesuffix(".git").lower()).strip("-.") or "module"


def shallow_clone(url: str, branch: str | None, target: Path, timeout: float = 300) -> str:
    """``git clone --depth 1`` of ``url`` into ``target`` without its ``.git``; returns the commit."""
    _git(
        "clone",
        "-q",
        "--depth",
        "1",
        *(["--branch", branch] if branch else []),
        "--",
        url,
        str(target),
        timeout=timeout,
    )
    commit = _git("rev-parse", "HEAD", cwd=target).strip()
    shutil.rmtree(target / ".git", ignore_errors=True)
    return commit


class CachedSource:
    """A source fetched from elsewhere into ``cache``; ``status.json`` says when, and the last error."""

    cfg: SourceConfig
    cache: Path

    @property
    def status_file(self) -> Path:
        return self.cache / "status.json"

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def stale(self) -> bool:
        fetched = self.status().get("fetched_at")
        return fetched is None or time.time() - fetched > self.cfg.refresh_interval

    def _write_status(self, status: dict[str, Any]) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=1))
        tmp.replace(self.status_file)


class RepoSource(CachedSource):
    """One module (or tool) repository, cloned with its code: its item runs here, built the AI4OS way.

    What ``ai4lab catalog add-source NAME --git URL`` adds for a module
    repository. The clone is the cache: a refresh that fails keeps the last
    good one and says why.
    """

    def __init__(self, cfg: SourceConfig, cache_root: Path) -> None:
        if not cfg.url:
            raise ValueError(f"catalog source {cfg.name!r}: url is required")
        self.cfg = cfg
        self.cache = cache_root / cfg.name
        self.item_id = repo_item_id(cfg.url)

    def load_cached(self) -> LoadResult:
        result = LoadResult(fetched_at=self.status().get("fetched_at"))
        repo = self.cache / "repo"
        if not repo.is_dir():
            return result
        try:
            path = find_metadata_file(repo)
            data = validate(parse_text(path.read_text(errors="replace"), path.name)) if path else {}
            result.items.append(
                load_folder(repo, kind=self.cfg.kind or kind_of(data), source=self.cfg.name, item_id=self.item_id)
            )
        except MetadataError as e:
            result.errors.append(
                ItemError(source=self.cfg.name, item=self.item_id, reason=str(e), location=self.cfg.url or "")
            )
        return result

    def refresh(self) -> LoadResult:
        self.cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self.cache))
        try:
            try:
                commit = shallow_clone(self.cfg.url or "", self.cfg.branch, work / "repo")
                if find_metadata_file(work / "repo") is None:
                    raise RuntimeError(f"no {' or '.join(METADATA_FILES)} at the root of {self.cfg.url}")
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                status = self.status()
                status.update(last_error=f"cannot fetch {self.cfg.url}: {e}", last_error_at=time.time())
                self._write_status(status)
                return self.load_cached()
            old = self.cache / "repo"
            swap = self.cache / "repo.old"
            shutil.rmtree(swap, ignore_errors=True)
            if old.exists():
                old.rename(swap)
            (work / "repo").rename(old)
            shutil.rmtree(swap, ignore_errors=True)
            self._write_status({"fetched_at": time.time(), "url": self.cfg.url, "commit": commit})
            return self.load_cached()
        finally:
            shutil.rmtree(work, ignore_errors=True)


class RemoteCatalog(CachedSource):
    """A remote catalog (git or http) with its on-disk cache of the last good fetch."""

    def __init__(self, cfg: SourceConfig, cache_root: Path) -> None:
        if cfg.kind is None:
            raise ValueError(f"catalog source {cfg.name!r}: remote catalogs need kind: module or tool")
        if not cfg.url:
            raise ValueError(f"catalog source {cfg.name!r}: url is required")
        self.cfg = cfg
        self.cache = cache_root / cfg.name
        self.kind: Kind = cfg.kind
        self.url: str = cfg.url

    def load_cached(self) -> LoadResult:
        status = self.status()
        result = LoadResult(fetched_at=status.get("fetched_at"))
        result.errors = [ItemError(**e) for e in status.get("errors", [])]
        items_dir = self.cache / "items"
        if not items_dir.is_dir():
            return result
        for f in sorted(items_dir.iterdir()):
            item_id = item_id_of(unquote(f.name.rsplit(".", 1)[0]))
            try:
                data = validate(parse_text(f.read_text(errors="replace"), f.name))
                result.items.append(to_item(data, item_id=item_id, kind=self.kind, source=self.cfg.name))
            except MetadataError as e:
                result.errors.append(ItemError(source=self.cfg.name, item=item_id, reason=str(e)))
        return result

    # -- fetch --------------------------------------------------------------------------
    def _gitmodules(self, work: Path) -> str:
        if self.cfg.type == "git":
            return _git_read_file(self.url, self.cfg.branch, (".gitmodules",), work / "catalog")[1]
        r = self._http.get(self.url.rstrip("/") + "/.gitmodules")
        r.raise_for_status()
        return r.text

    def _fetch_item(self, sub: Submodule, work: Path) -> tuple[str, str]:
        names = (*METADATA_FILES, LEGACY_FILE)
        if self.cfg.type == "git":
            return _git_read_file(sub.url, sub.branch, names, work / sub.name)
        org, repo = sub.org_repo
        for name in names:
            url = self.cfg.raw_url_template.format(org=org, repo=repo, branch=sub.branch or "master", file=name)
            r = self._http.get(url)
            if r.status_code == 200:
                return name, r.text
            if r.status_code != 404:
                r.raise_for_status()
        raise FileNotFoundError(f"no {' or '.join(names)} in {org}/{repo} ({sub.branch or 'master'})")

    def refresh(self) -> LoadResult:
        """Fetch everything anew; on a catalog-level failure keep the old cache and record why."""
        work = Path(tempfile.mkdtemp(prefix="ai4lab-catalog-"))
        self._http = httpx.Client(timeout=30, follow_redirects=True)
        try:
            try:
                subs = parse_gitmodules(self._gitmodules(work))
            except (RuntimeError, httpx.HTTPError, OSError, configparser.Error, subprocess.TimeoutExpired) as e:
                status = self.status()
                status["last_error"] = f"cannot read the catalog {self.cfg.url}: {e}"
                status["last_error_at"] = time.time()
                self._write_status(status)
                return self.load_cached()
            fetched: dict[str, tuple[str, str]] = {}
            errors: list[ItemError] = []

            def one(sub: Submodule) -> None:
                try:
                    fetched[sub.name] = self._fetch_item(sub, work)
                except (RuntimeError, httpx.HTTPError, OSError, subprocess.TimeoutExpired) as e:
                    errors.append(
                        ItemError(source=self.cfg.name, item=item_id_of(sub.name), reason=str(e), location=sub.url)
                    )

            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(one, subs))
            new_items = work / "new-items"
            new_items.mkdir()
            old_items = self.cache / "items"
            for sub in subs:
                if sub.name in fetched:
                    name, text = fetched[sub.name]
                    try:
                        validate(parse_text(text, name))
                    except MetadataError as e:
                        kept = self._keep_old(sub.name, old_items, new_items)
                        note = "; serving the last good version" if kept else ""
                        errors.append(
                            ItemError(
                                source=self.cfg.name, item=item_id_of(sub.name), reason=f"{e}{note}", location=sub.url
                            )
                        )
                        continue
                    (new_items / f"{quote(sub.name, safe='')}.{name.rsplit('.', 1)[-1]}").write_text(text)
                else:
                    # an item that could not be fetched this time keeps its last good copy
                    self._keep_old(sub.name, old_items, new_items)
            self.cache.mkdir(parents=True, exist_ok=True)
            swap = self.cache / "items.old"
            shutil.rmtree(swap, ignore_errors=True)
            if old_items.exists():
                old_items.rename(swap)
            shutil.move(str(new_items), old_items)
            shutil.rmtree(swap, ignore_errors=True)
            self._write_status(
                {
                    "fetched_at": time.time(),
                    "url": self.cfg.url,
                    "errors": [e.model_dump() for e in sorted(errors, key=lambda e: e.item)],
                }
            )
            return self.load_cached()
        finally:
            self._http.close()
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _keep_old(name: str, old_items: Path, new_items: Path) -> bool:
        if not old_items.is_dir():
            return False
        kept = False
        for old in old_items.iterdir():
            if unquote(old.name.rsplit(".", 1)[0]) == name:
                shutil.copy2(old, new_items / old.name)
                kept = True
        return kept
