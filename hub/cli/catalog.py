"""``ai4lab catalog``: browse, search, validate and refresh the catalog from the command line.

Reads the sources (and remote caches) directly, so it works whether or not the
platform is running; ``refresh`` writes the caches that the running platform reads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.markdown import Markdown
from rich.table import Table

from ai4lab.catalog import Catalog
from ai4lab.catalog import metadata as md
from ai4lab.catalog.model import KINDS, Kind
from ai4lab.cli.output import err, out
from ai4lab.cli.output import fail as _fail
from ai4lab.core import db
from ai4lab.core.errors import PlatformError

app = typer.Typer(help="The marketplace: modules and tools.", no_args_is_help=True)
KIND_HELP = "modules or tools"


def _catalog() -> Catalog:
    from ai4lab.cli.main import load_settings

    settings = load_settings()
    settings.state.mkdir(parents=True, exist_ok=True)
    db.upgrade(settings.db_url)
    return Catalog.for_settings(settings)


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        _fail(f"unknown kind {kind!r}: use modules or tools")
    return KINDS[kind]


def _table(result: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return
    table = Table("id", "title", "tasks", "tags", "gpu", "source", title=f"{result['total']} item(s)")
    for it in result["items"]:
        table.add_row(
            it["id"],
            it["title"],
            ", ".join(it["tasks"]),
            ", ".join(it["tags"][:4]),
            "yes" if it["gpu_capable"] else "",
            it["source"],
        )
    out.print(table)


@app.command("list")
def list_items(
    kind: str = typer.Argument("modules", help=KIND_HELP),
    task: str | None = typer.Option(None),
    category: str | None = typer.Option(None),
    tag: str | None = typer.Option(None),
    library: str | None = typer.Option(None),
    gpu: bool | None = typer.Option(None, "--gpu/--no-gpu"),
    source: str | None = typer.Option(None),
    sort: str = typer.Option("title"),
    limit: int = typer.Option(200, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List modules or tools, with filters."""
    try:
        result = _catalog().search(
            _kind(kind),
            task=task,
            category=category,
            tag=tag,
            library=library,
            gpu=gpu,
            source=source,
            sort=sort,
            per_page=limit,
        )
    except ValueError as e:
        _fail(str(e))
    _table(result, as_json)


@app.command("search")
def search(
    query: str = typer.Argument(..., help="words to look for"),
    kind: str = typer.Option("modules", "--kind", help=KIND_HELP),
    limit: int = typer.Option(20, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Full-text search (title, tags, summary, description)."""
    _table(_catalog().search(_kind(kind), q=query, per_page=limit), as_json)


@app.command("show")
def show(
    item_id: str = typer.Argument(...),
    kind: str = typer.Option("modules", "--kind", help=KIND_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Everything about one item."""
    item = _catalog().get(_kind(kind), item_id)
    if item is None:
        _fail(f"no {_kind(kind)} {item_id!r} in the catalog: try 'ai4lab catalog search'", 1)
    if as_json:
        sys.stdout.write(item.model_dump_json(indent=1) + "\n")
        return
    out.print(f"[bold]{item.title}[/] ({item.kind} {item.id}, source {item.source})")
    out.print(item.summary)
    for label, values in (
        ("tasks", item.tasks),
        ("categories", item.categories),
        ("tags", item.tags),
        ("libraries", item.libraries),
    ):
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
        out.print(
            f"{path}: [green]valid[/] against schema {md.schema_version()}{note}: {data.get('title')}", highlight=False
        )
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


@app.command("check")
def check(
    item_id: str = typer.Argument(..., help="the item's catalog id"),
    kind: str = typer.Option("modules", "--kind", help=KIND_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Does it run here? Metadata, environment build, get_metadata, warm, predict; the first failing step's log.

    Exit code 0 when every step passed or was skipped, 1 when one failed.
    """
    from ai4lab.catalog.check import run_check
    from ai4lab.catalog.registry import Viewer
    from ai4lab.cli.main import load_settings

    # whoever can run this command on the platform's machine sees every item, private ones too
    item = _catalog().get(_kind(kind), item_id, Viewer(name="", admin=True))
    if item is None:
        _fail(f"no {_kind(kind)} {item_id!r} in the catalog: try 'ai4lab catalog search'", 1)
    report = run_check(item, load_settings())
    if as_json:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
        raise typer.Exit(0 if report["ok"] else 1)
    marks = {"ok": "[green]ok[/]", "failed": "[red]failed[/]", "skipped": "[yellow]skipped[/]"}
    table = Table(
        "step",
        "result",
        "detail",
        title=f"{item.id}: " + ("runs here" if report["ok"] else f"fails at {report['first_failure']!r}"),
    )
    for step in report["steps"]:
        table.add_row(step["step"], marks.get(step["status"], step["status"]), step["detail"])
    out.print(table)
    failed = next((s for s in report["steps"] if s["status"] == "failed"), None)
    if failed and failed.get("log"):
        err.print(failed["log"], highlight=False, markup=False)
    raise typer.Exit(0 if report["ok"] else 1)


def _source_summary(catalog: Catalog, name: str) -> str:
    items = catalog.items_of(name)
    return f"{len(items)} item(s): {', '.join(i.id for i in items) or '-'}"


@app.command("add-source")
def add_source(
    name: str = typer.Argument(..., help="a short name for the source, shown as its items' source"),
    git: str = typer.Option(..., "--git", help="git URL of a module repository or of an AI4OS catalog repository"),
    kind: str | None = typer.Option(None, help="module or tool (default: from the metadata or the catalog name)"),
    branch: str | None = typer.Option(None, help="branch or tag (default: the repository's default branch)"),
) -> None:
    """Add a module repository (it runs here) or an AI4OS catalog repository, without editing the settings file."""
    from ai4lab.catalog import added_sources
    from ai4lab.cli.main import load_settings

    settings = load_settings()
    try:
        cfg = added_sources.detect(name, git, branch, kind)
        added_sources.add(settings, cfg)
    except PlatformError as e:
        _fail(str(e))
    catalog = _catalog()
    catalog.remotes[name].refresh()
    catalog.reload()
    what = "module repository" if cfg.type == "repo" else f"AI4OS catalog of {cfg.kind}s"
    problems = [problem for problem in catalog.errors() if problem.source == name]
    out.print(f"added source {name} ({what}): {_source_summary(catalog, name)}", highlight=False)
    for problem in problems:
        err.print(f"  {problem.item}: {problem.reason}", highlight=False)


@app.command("remove-source")
def remove_source(name: str = typer.Argument(..., help="a source added with add-source")) -> None:
    """Remove a source added with add-source (and its cached copy)."""
    from ai4lab.catalog import added_sources
    from ai4lab.cli.main import load_settings

    try:
        added_sources.remove(load_settings(), name)
    except PlatformError as e:
        _fail(str(e))
    out.print(f"removed source {name}")


@app.command("sources")
def sources() -> None:
    """The catalog sources: from the settings file, then those added with add-source."""
    catalog = _catalog()
    table = Table("name", "type", "where", "kind", "items", title="catalog sources")
    for cfg in catalog.sources:
        table.add_row(
            cfg.name, cfg.type, cfg.url or cfg.path or "", cfg.kind or "", str(len(catalog.items_of(cfg.name)))
        )
    out.print(table)
