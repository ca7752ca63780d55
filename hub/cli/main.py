"""The ``ai4lab`` command line.

Errors are one line on stderr and a non-zero exit code, never a traceback:
the line says what to fix.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ai4lab.cli.output import fail
from ai4lab.core import accounts, db
from ai4lab.core import deployments as deps
from ai4lab.core.isolation import describe_mode
from ai4lab.core.settings import ROLES, Settings

app = typer.Typer(help="ai4lab: an AI/ML platform for scientists around JupyterHub.", no_args_is_help=True)
users_app = typer.Typer(help="Local accounts and their roles.", no_args_is_help=True)
config_app = typer.Typer(help="Platform configuration.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(config_app, name="config")


def _add_subcommands() -> None:
    from ai4lab.cli import remote as remote_cli
    from ai4lab.cli.catalog import app as catalog_app
    from ai4lab.cli.storage import app as storage_app

    app.add_typer(catalog_app, name="catalog")
    app.add_typer(storage_app, name="storage")
    remote_cli.register(app)


_add_subcommands()
out = Console()


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        fail(f"invalid setting {where}: {first['msg']} (check ai4lab.yaml or AI4LAB_* variables)")
    raise AssertionError  # unreachable


def ready_db(settings: Settings) -> str:
    settings.state.mkdir(parents=True, exist_ok=True)
    db.upgrade(settings.db_url)
    return settings.db_url


@app.command()
def up(
    config_file: Path | None = typer.Option(None, "--hub-config", help="JupyterHub config file to use."),
) -> None:
    """Start the platform in the foreground (hub, proxy, API, MLflow); Ctrl-C stops it all."""
    from ai4lab.jhub.launcher import up as run_up

    settings = load_settings()
    try:
        code = run_up(settings, config_file)
    except (FileNotFoundError, RuntimeError, TimeoutError) as e:
        fail(str(e), 1)
    raise typer.Exit(code)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Is the platform running? Users, running deployments, service health."""
    settings = load_settings()
    url = settings.public_url
    health: dict[str, str] = {}
    for name, path in (
        ("hub", "/hub/api/"),
        ("api", "/services/ai4lab/health"),
        ("mlflow", "/services/mlflow/gateway-health"),
    ):
        try:
            r = httpx.get(url + path, timeout=3, follow_redirects=False)
            health[name] = "up" if r.status_code < 400 else f"HTTP {r.status_code}"
        except httpx.TransportError:
            health[name] = "down"
    db_url = ready_db(settings)
    active = deps.list_deployments(db_url, active_only=True)
    info = {
        "url": url,
        "state_dir": str(settings.state),
        "mode": describe_mode(settings),
        "services": health,
        "users": len(accounts.list_users(db_url)),
        "active_deployments": [d.to_dict() for d in active],
    }
    if as_json:
        out.print_json(json.dumps(info))
    else:
        out.print(f"ai4lab at [bold]{url}[/] (state {settings.state})")
        out.print(f"  {info['mode']}")
        out.print("  " + ", ".join(f"{k}: {v}" for k, v in health.items()))
        out.print(f"  {info['users']} user(s), {len(active)} active deployment(s)")
        if active:
            table = Table("id", "owner", "kind", "name", "status")
            for d in active:
                table.add_row(d.id, d.owner, d.kind, d.name, d.status)
            out.print(table)
    if health["hub"] != "up":
        raise typer.Exit(1)


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name (lower case)."),
    role: str = typer.Option("basic", "--role", help=f"One of {', '.join(ROLES)}."),
    admin: bool = typer.Option(False, "--admin", help="Make the user a JupyterHub admin."),
    password: str | None = typer.Option(
        None, "--password", help="Password (at least 8 characters); asked for when not given."
    ),
    vo: str | None = typer.Option(None, "--vo", help="Project / virtual organisation."),
) -> None:
    """Add a local account."""
    settings = load_settings()
    if role not in ROLES:
        fail(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    if not settings.isolating and not admin and not settings.allow_shared_single_user:
        others = [u.name for u in accounts.list_users(ready_db(settings)) if not u.is_admin and u.name != name]
        if others:
            fail(
                f"single-user mode (the platform does not run as root): {name}'s code would run as the same "
                f"system user as {others[0]}'s and could read their files; run ai4lab as root, or set "
                "allow_shared_single_user: true (AI4LAB_ALLOW_SHARED_SINGLE_USER=1) to accept that"
            )
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        accounts.add_user(ready_db(settings), name, password, role=role, admin=admin, vo=vo)
    except accounts.AccountError as e:
        fail(str(e))
    out.print(f"added {name} ({role}{', admin' if admin else ''})")


@users_app.command("set")
def users_set(
    name: str = typer.Argument(...),
    role: str | None = typer.Option(None, "--role", help=f"One of {', '.join(ROLES)}."),
    admin: bool | None = typer.Option(None, "--admin/--no-admin"),
    password: str | None = typer.Option(None, "--password"),
) -> None:
    """Change a user's role, admin flag or password."""
    settings = load_settings()
    try:
        accounts.update_user(ready_db(settings), name, role=role, admin=admin, password=password)
    except accounts.AccountError as e:
        fail(str(e))
    out.print(f"updated {name}")


@users_app.command("password")
def users_password(
    name: str = typer.Argument(..., help="The account whose password to set."),
    password: str | None = typer.Option(
        None,
        "--password",
        help="The new password (at least 8 characters); asked for on a terminal, generated and printed once otherwise.",
    ),
    generate: bool = typer.Option(False, "--generate", help="Generate the password and print it once."),
) -> None:
    """Set a new password, e.g. for the admin whose generated password was shown only on first start."""
    import secrets

    settings = load_settings()
    db_url = ready_db(settings)
    if accounts.get_user(db_url, name) is None:
        fail(f"no user {name!r}: check 'ai4lab users list', or add it with 'ai4lab users add'")
    if password is not None and generate:
        fail("give --password or --generate, not both")
    generated = password is None and (generate or not sys.stdin.isatty())
    if generated:
        password = secrets.token_urlsafe(12)
    elif password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        accounts.update_user(db_url, name, password=password)
    except accounts.AccountError as e:
        fail(str(e))
    if generated:
        sys.stdout.write(f"new password of {name}: {password}\n")
    else:
        out.print(f"password of {name} changed")


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List accounts and roles."""
    settings = load_settings()
    users = accounts.list_users(ready_db(settings))
    if as_json:
        out.print_json(json.dumps([{"name": u.name, "role": u.role, "admin": u.is_admin} for u in users]))
        return
    table = Table("name", "role", "admin", "vo")
    for u in users:
        table.add_row(u.name, u.role, "yes" if u.is_admin else "", u.vo or "")
    out.print(table)


@users_app.command("token")
def users_token(
    name: str = typer.Argument(...),
    note: str = typer.Option("ai4lab cli", "--note"),
    expires_in: int | None = typer.Option(None, "--expires-in", help="Seconds until the token expires."),
) -> None:
    """Issue a JupyterHub API token for a user (the platform must be running)."""
    from ai4lab.client.hub import HubClient, HubError
    from ai4lab.core.secrets_store import load_or_create

    settings = load_settings()
    if accounts.get_user(ready_db(settings), name) is None:
        fail(f"no user {name!r}: add it with 'ai4lab users add'")
    data, _ = load_or_create(settings.state)
    client = HubClient(f"{settings.public_url}/hub/api", data["api_service_token"])

    async def issue() -> str:
        await client.ensure_user(name)
        return await client.new_token(name, note, expires_in)

    try:
        token = asyncio.run(issue())
    except httpx.TransportError:
        fail(f"the platform is not running at {settings.public_url}: start it with 'ai4lab up'", 1)
    except HubError as e:
        fail(f"the hub refused: {e}", 1)
    sys.stdout.write(token + "\n")


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the effective settings (defaults, ai4lab.yaml and AI4LAB_* variables merged)."""
    settings = load_settings()
    data = json.loads(settings.model_dump_json())
    data["state_dir"] = str(settings.state)
    data["database_url"] = settings.db_url
    if as_json:
        out.print_json(json.dumps(data))
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


@config_app.command("reference")
def config_reference(
    write: Path | None = typer.Option(
        None, "--write", help="Update the reference between the config-reference markers of this file."
    ),
) -> None:
    """Print the configuration reference as Markdown (settings and spawner traitlets)."""
    from ai4lab.core import config_reference as ref

    if write is None:
        sys.stdout.write(ref.markdown())
        return
    try:
        write.write_text(ref.write_into(write.read_text()))
    except (OSError, ValueError) as e:
        fail(f"cannot update {write}: {e}")
    out.print(f"updated the configuration reference in {write}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
