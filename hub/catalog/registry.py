"""The merged catalog: sources in priority order, published items, search and filters.

Kept in memory (a marketplace is hundreds of items, not millions) with a
lower-cased text per item, so that listing and searching is a scan of plain
strings. Remote sources are read from their cache; ``refresh()`` fetches them.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ai4lab.catalog import metadata as md
from ai4lab.catalog.model import CatalogItem, ItemError, Kind
from ai4lab.catalog.sources import LoadResult, RemoteCatalog, RepoSource, load_folder_source
from ai4lab.core.db import PublishedItem, session_scope
from ai4lab.core.settings import Settings, SourceConfig

SORTS = ("relevance", "title", "updated", "-updated")
_WORD = re.compile(r"[\w.+-]+")


@dataclass(frozen=True)
class Viewer:
    """Who is looking: decides which published items are visible."""

    name: str | None = None
    vo: str | None = None
    admin: bool = False


ANONYMOUS = Viewer()


_WEIGHTS = (("title", 4.0), ("tags", 3.0), ("summary", 2.0), ("other", 1.0))


@dataclass
class Indexed:
    """An item with what search needs precomputed: lower-cased texts, filter sets, its summary."""

    item: CatalogItem
    title: str
    fields: dict[str, str]
    everything: str
    facets: dict[str, frozenset[str]]
    summary: dict[str, Any]
    summary_json: bytes

    @classmethod
    def of(cls, item: CatalogItem) -> Indexed:
        fields = {
            "title": item.title.lower(),
            "tags": " ".join(item.tags).lower(),
            "summary": item.summary.lower(),
            "other": " ".join([item.id, item.description, *item.tasks, *item.categories, *item.libraries]).lower(),
        }
        lower = lambda values: frozenset(v.lower() for v in values)  # noqa: E731
        return cls(
            item=item,
            title=fields["title"],
            fields=fields,
            everything=" ".join(fields.values()),
            facets={
                "task": lower(item.tasks),
                "category": lower(item.categories),
                "tag": lower(item.tags),
                "library": lower(item.libraries),
                "data_type": lower(item.data_types),
            },
            summary=item.summary_dict(),
            summary_json=json.dumps(item.summary_dict()).encode(),
        )


def score(words: list[str], entry: Indexed) -> float:
    """Sum of field weights for each query word found; 0 when any word is missing."""
    total = 0.0
    for w in words:
        if w not in entry.everything:
            return 0.0
        total += sum(weight for name, weight in _WEIGHTS if w in entry.fields[name])
    return total


class Catalog:
    def __init__(
        self, sources: list[SourceConfig], cache_root: Path, db_url: str, added_file: Path | None = None
    ) -> None:
        """``added_file``: the sources admins added at run time (``ai4lab.catalog.added_sources``), re-read on
        change.
        """
        self.configured = list(sources)
        self.added_file = added_file
        self.cache_root = cache_root
        self.db_url = db_url
        self._use_sources(self.configured + self._added())
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], CatalogItem] = {}
        self._by_kind: dict[str, list[Indexed]] = {}
        self._errors: list[ItemError] = []
        self._stamp: tuple[float, ...] = ()
        self._loaded = False
        # ordered hits of recent queries; marketplace pages repeat the same few queries a lot
        self._results: OrderedDict[tuple[Any, ...], list[Indexed]] = OrderedDict()
        self.result_cache_size = 512
        self._restricted = False

    @classmethod
    def for_settings(cls, settings: Settings) -> Catalog:
        from ai4lab.catalog.added_sources import sources_file

        return cls(settings.catalog_sources, settings.catalog_cache, settings.db_url, sources_file(settings))

    # -- loading ------------------------------------------------------------------------
    def _added(self) -> list[SourceConfig]:
        if self.added_file is None:
            return []
        from ai4lab.catalog.added_sources import read

        taken = {s.name for s in self.configured}
        return [s for s in read(self.added_file) if s.name not in taken]

    def _use_sources(self, sources: list[SourceConfig]) -> None:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"catalog source names must be unique: {names}")
        self.sources = sources
        self.remotes: dict[str, RemoteCatalog | RepoSource] = {
            s.name: (RepoSource if s.type == "repo" else RemoteCatalog)(s, self.cache_root)
            for s in sources
            if s.type in ("git", "http", "repo")
        }

    def _load_source(self, cfg: SourceConfig) -> LoadResult:
        if cfg.type == "folder":
            return load_folder_source(cfg)
        remote = self.remotes[cfg.name]
        result = remote.load_cached()
        status = remote.status()
        if status.get("last_error") and status.get("last_error_at", 0) >= (status.get("fetched_at") or 0):
            result.errors.insert(0, ItemError(source=cfg.name, item="*", reason=status["last_error"]))
        elif result.fetched_at is None:
            result.errors.insert(0, ItemError(source=cfg.name, item="*", reason="not fetched yet: refresh the catalog"))
        return result

    def _published(self) -> LoadResult:
        with session_scope(self.db_url) as db:
            rows = list(db.scalars(select(PublishedItem)))
        result = LoadResult()
        for row in rows:
            try:
                item = md.to_item(
                    row.item_metadata,
                    item_id=row.id,
                    kind=row.kind,  # type: ignore[arg-type]
                    source="published",
                    package_path=Path(row.package_path) if row.package_path else None,
                )
            except md.MetadataError as e:
                result.errors.append(ItemError(source="published", item=row.id, reason=str(e)))
                continue
            if row.docker_image:
                item.run.docker_image, item.run.docker_tag = md._split_image(row.docker_image)
            item.owner, item.vo, item.visibility, item.lineage = row.owner, row.vo, row.visibility, row.lineage  # type: ignore[assignment]
            result.items.append(item)
        return result

    def _cache_stamp(self) -> tuple[float, ...]:
        stamps = []
        if self.added_file is not None:
            try:
                stamps.append(self.added_file.stat().st_mtime)
            except OSError:
                stamps.append(0.0)
        for remote in self.remotes.values():
            try:
                stamps.append(remote.status_file.stat().st_mtime)
            except OSError:
                stamps.append(0.0)
        return tuple(stamps)

    def reload(self) -> None:
        """Re-read every source (cheap for remote ones: their cache) and the published items."""
        items: dict[tuple[str, str], CatalogItem] = {}
        errors: list[ItemError] = []
        if self.added_file is not None:
            self._use_sources(self.configured + self._added())
        results = [(cfg.name, self._load_source(cfg)) for cfg in self.sources]
        results.append(("published", self._published()))
        for name, result in results:
            errors.extend(result.errors)
            for item in result.items:
                key = (item.kind, item.id)
                if key in items:
                    errors.append(
                        ItemError(
                            source=name,
                            item=item.id,
                            reason=f"{item.kind} {item.id!r} is also in source {items[key].source!r}, "
                            "which comes first",
                        )
                    )
                    continue
                items[key] = item
        with self._lock:
            self._items = items
            self._by_kind = {
                kind: [Indexed.of(v) for k, v in items.items() if k[0] == kind] for kind in ("module", "tool")
            }
            self._errors = errors
            self._stamp = self._cache_stamp()
            self._results.clear()
            self._restricted = any(item.visibility != "public" for item in items.values())
            self._loaded = True

    def ensure_loaded(self) -> None:
        """Load on first use, and again when another process refreshed a remote cache."""
        if not self._loaded or self._cache_stamp() != self._stamp:
            self.reload()

    def refresh(self, force: bool = True) -> list[ItemError]:
        """Fetch remote sources (all, or only the stale ones) and reload."""
        for remote in self.remotes.values():
            if force or remote.stale():
                remote.refresh()
        self.reload()
        return self.errors()

    # -- queries --------------------------------------------------------------------------
    def ids_not_published(self) -> set[str]:
        """Ids the catalog's sources (not publications) hold: a publication may not take them."""
        self.ensure_loaded()
        return {item_id for (_, item_id), item in self._items.items() if item.source != "published"}

    def items_of(self, source: str) -> list[CatalogItem]:
        """Every item a source gave, whoever may see it (for admins and the command line)."""
        self.ensure_loaded()
        return sorted((v for v in self._items.values() if v.source == source), key=lambda v: (v.kind, v.id))

    def source_views(self) -> list[dict[str, Any]]:
        """Each source as admins see it: where from, added at run time or configured, last fetch, its items."""
        self.ensure_loaded()
        configured = {s.name for s in self.configured}
        views = []
        for cfg in self.sources:
            remote = self.remotes.get(cfg.name)
            status = remote.status() if remote is not None else {}
            views.append(
                {
                    **cfg.model_dump(include={"name", "type", "url", "path", "kind", "branch"}),
                    "added": cfg.name not in configured,
                    "fetched_at": status.get("fetched_at"),
                    "last_error": status.get("last_error"),
                    "items": [i.id for i in self.items_of(cfg.name)],
                }
            )
        return views

    def errors(self) -> list[ItemError]:
        self.ensure_loaded()
        return list(self._errors)

    @staticmethod
    def visible(item: CatalogItem, viewer: Viewer) -> bool:
        if item.visibility == "public" or viewer.admin:
            return True
        if viewer.name and item.owner == viewer.name:
            return True
        return item.visibility == "vo" and viewer.vo is not None and item.vo == viewer.vo

    def get(self, kind: Kind, item_id: str, viewer: Viewer = ANONYMOUS) -> CatalogItem | None:
        self.ensure_loaded()
        item = self._items.get((kind, item_id))
        return item if item is not None and self.visible(item, viewer) else None

    def search_json(self, kind: Kind, **query: Any) -> bytes:
        """``search`` as the JSON bytes of the answer, built from each item's pre-encoded summary."""
        result = self.search(kind, **query, _entries=True)
        items = b",".join(entry.summary_json for entry in result.pop("items"))
        head = json.dumps(result).encode()
        return b'{"items":[' + items + b"]," + head[1:]

    def search(
        self,
        kind: Kind,
        *,
        q: str | None = None,
        task: str | None = None,
        category: str | None = None,
        tag: str | None = None,
        library: str | None = None,
        data_type: str | None = None,
        gpu: bool | None = None,
        source: str | None = None,
        sort: str = "relevance",
        page: int = 1,
        per_page: int = 20,
        viewer: Viewer = ANONYMOUS,
        _entries: bool = False,
    ) -> dict[str, Any]:
        if sort not in SORTS:
            raise ValueError(f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
        self.ensure_loaded()
        # everyone sees the same thing unless some items are private or VO-only
        who = viewer if self._restricted else ANONYMOUS
        key = (kind, q, task, category, tag, library, data_type, gpu, source, sort, who)
        with self._lock:
            ordered = self._results.get(key)
            if ordered is not None:
                self._results.move_to_end(key)
        if ordered is None:
            ordered = self._ordered_hits(kind, q, task, category, tag, library, data_type, gpu, source, sort, viewer)
            with self._lock:
                self._results[key] = ordered
                while len(self._results) > self.result_cache_size:
                    self._results.popitem(last=False)
        total = len(ordered)
        start = (page - 1) * per_page
        page_entries = ordered[start : start + per_page]
        return {
            "items": page_entries if _entries else [entry.summary for entry in page_entries],
            "total": total,
            "page": page,
            "per_page": per_page,
            "pages": max(1, math.ceil(total / per_page)),
        }

    def _ordered_hits(
        self,
        kind: Kind,
        q: str | None,
        task: str | None,
        category: str | None,
        tag: str | None,
        library: str | None,
        data_type: str | None,
        gpu: bool | None,
        source: str | None,
        sort: str,
        viewer: Viewer,
    ) -> list[Indexed]:
        words = [w.lower() for w in _WORD.findall(q or "")]
        wanted = {
            name: value.lower()
            for name, value in (
                ("task", task),
                ("category", category),
                ("tag", tag),
                ("library", library),
                ("data_type", data_type),
            )
            if value
        }
        hits: list[tuple[float, Indexed]] = []
        for entry in self._by_kind.get(kind, []):
            item = entry.item
            if item.visibility != "public" and not self.visible(item, viewer):
                continue
            if wanted and any(value not in entry.facets[name] for name, value in wanted.items()):
                continue
            if gpu is not None and item.gpu_capable != gpu:
                continue
            if source is not None and item.source != source:
                continue
            s = score(words, entry) if words else 1.0
            if s > 0:
                hits.append((s, entry))
        if sort == "title":
            hits.sort(key=lambda h: h[1].title)
        elif sort in ("updated", "-updated"):
            hits.sort(key=lambda h: h[1].item.updated or "", reverse=sort == "-updated")
        else:
            hits.sort(key=lambda h: (-h[0], h[1].title))
        return [h[1] for h in hits]

    def facets(self, kind: Kind, viewer: Viewer = ANONYMOUS) -> dict[str, list[str]]:
        """The values the filters can take, for the marketplace's filter menus."""
        self.ensure_loaded()
        out: dict[str, set[str]] = {
            "tasks": set(),
            "categories": set(),
            "tags": set(),
            "libraries": set(),
            "data_types": set(),
            "sources": set(),
        }
        for (k, _), item in self._items.items():
            if k != kind or not self.visible(item, viewer):
                continue
            out["tasks"].update(item.tasks)
            out["categories"].update(item.categories)
            out["tags"].update(item.tags)
            out["libraries"].update(item.libraries)
            out["data_types"].update(item.data_types)
            out["sources"].add(item.source)
        return {k: sorted(v, key=str.lower) for k, v in out.items()}
