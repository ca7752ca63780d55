"""``ai4lab catalog``: browse, search, validate and refresh the catalog from the command line.

Reads the sources (and remote caches) directly, so it works whether or not the
platform is running; ``refresh`` writes the caches that the running platform reads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markdown import Markdown
from rich.table import Table

from ai4lab import db
from ai4lab.catalog import Catalog
from ai4lab.catalog import metadata as md
from ai4lab.catalog.model import KINDS
from ai4lab.cli_output import err, out
from ai4lab.cli_output import fail as _fail

app = typer.Typer(help="The marketplace: modules and tools.", no_args_is_help=True)
KIND_HELP = "modules or tools"


def _catalog() -> Catalog:
    from ai4lab.cli import load_settings

    settings = load_settings()
    settings.state.mkdir(parents=True, exist_ok=True)
    db.upgrade(settings.db_url)
    return Catalog(settings.catalog_sources, settings.catalog_cache, settings.db_url)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        _fail(f"unknown kind {kind!r}: use modules or tools")
    return KINDS[kind]


def _table(result: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return
    table = Table("id", "title", "tasks", "tags", "gpu", "source", title=f"{result['total']} item(s)")
    for it in result["items"]:
        table.add_row(it["id"], it["title"], ", ".join(it["tasks"]), ", ".join(it["tags"][:4]),
                      "yes" if it["gpu_capable"] else "", it["source"])
    out.print(table)


@app.command("list")
def list_items(
    kind: str = typer.Argument("modules", help=KIND_HELP),
    task: Optional[str] = typer.Option(None), category: Optional[str] = typer.Option(None),
    tag: Optional[str] = typer.Option(None), library: Optional[str] = typer.Option(None),
    gpu: Optional[bool] = typer.Option(None, "--gpu/--no-gpu"), source: Optional[str] = typer.Option(None),
    sort: str = typer.Option("title"), limit: int = typer.Option(200, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List modules or tools, with filters."""
    try:
        result = _catalog().search(_kind(kind), task=task, category=category, tag=tag, library=library, gpu=gpu,
                                   source=source, sort=sort, per_page=limit)
    except ValueError as e:
        _fail(str(e))
    _table(result, as_json)


@app.command("search")
def search(
    query: str = typer.Argument(..., help="words to look for"),
    kind: str = typer.Option("modules", "--kind", help=KIND_HELP),
    limit: int = typer.Option(20, min=1), as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Full-text search (title, tags, summary, description)."""
    _table(_catalog().search(_kind(kind), q=query, per_page=limit), as_json)


@app.command("show")
def show(
    item_id: str = typer.Argument(...), kind: str = typer.Option("modules", "--kind", help=KIND_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Everything about one item."""
    item = _catalog().get(_kind(kind), item_id)  # type: ignore[arg-type]
    if item is None:
        _fail(f"no {_kind(kind)} {item_id!r} in the catalog: try 'ai4lab catalog search'", 1)
    if as_json:
        sys.stdout.write(item.model_dump_json(indent=1) + "\n")
        return
    out.print(f"[bold]{item.title}[/] ({item.kind} {item.id}, source {item.source})")
    out.print(item.summary)
    for label, values in (("tasks", item.tasks), ("categories", item.categories), ("tags", item.tags),
                          ("libraries", item.libraries)):
        out.print(f"  {label}: {', '.join(values)}")
    for key, url in item.links.items():
        out.print(f"  {key}: {url}")
    if item.run.docker_image:
        out.print(f"  image: {item.run.docker_image}:{item.run.docker_tag}")
    if item.run.package_path:
        out.print(f"  local package: {item.run.package_path} (deepaas entry point {item.run.entry_point})")
    out.print(Markdown(item.description))


@app.command("validate")
def validate(paths: list[Path] = typer.Argument(..., help="ai4-metadata.yml files or item folders")) -> None:
    """Validate metadata as the catalog does (v1 metadata.json is converted first)."""
    bad = 0
    for path in paths:
        target = md.find_metadata_file(path) if path.is_dir() else path
        if target is None or not target.is_file():
            err.print(f"{path}: [red]invalid[/]: no metadata file found", highlight=False)
            bad += 1
            continue
        try:
            data = md.validate(md.parse_text(target.read_text(errors="replace"), target.name))
        except md.MetadataError as e:
            err.print(f"{path}: [red]invalid[/]: {e}", highlight=False)
            bad += 1
            continue
        note = " (v1, converted)" if md.is_legacy(md.parse_text(target.read_text(), target.name)) else ""
        out.print(f"{path}: [green]valid[/] against schema {md.schema_version()}{note}: {data.get('title')}",
                  highlight=False)
    raise typer.Exit(1 if bad else 0)


@app.command("refresh")
def refresh() -> None:
    """Fetch the remote sources now; print what failed."""
    catalog = _catalog()
    errors = catalog.refresh(force=True)
    counts = {k: catalog.search(k, per_page=1)["total"] for k in ("module", "tool")}
    out.print(f"{counts['module']} modules, {counts['tool']} tools; {len(errors)} error(s)")
    for e in errors:
        err.print(f"  {e.source}/{e.item}: {e.reason}", highlight=False)


@app.command("errors")
def errors() -> None:
    """Items that could not be loaded, per source."""
    errs = _catalog().errors()
    for e in errs:
        out.print(f"{e.source}/{e.item}: {e.reason}", highlight=False)
    if not errs:
        out.print("no errors")
