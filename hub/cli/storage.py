"""``ai4lab storage``: my platform storage from a terminal, without a browser.

Why: a dataset is uploaded before a training uses it (``ai4lab train --data
datasets/...``), and weights are fetched after; both can be large, so files
are streamed in parts with a progress bar, and a transfer that fails leaves no
partial file behind (on the platform, nor on this machine).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from ai4lab.cli.output import err, fail, out
from ai4lab.client import ApiError, Client
from ai4lab.core.storage import human_size

app = typer.Typer(help="My platform storage: list, upload, download, move, delete.", no_args_is_help=True)

BIG = 1 << 20  # files from this size on show a progress bar


@app.callback()
def connect(
    ctx: typer.Context,
    url: str | None = typer.Option(None, help="platform API URL (default $AI4LAB_API_URL, or this machine's platform)"),
    token: str | None = typer.Option(None, help="hub API token (default $AI4LAB_API_TOKEN)"),
) -> None:
    """The connection every storage command uses."""
    ctx.obj = (url, token)


def _client(ctx: typer.Context) -> Client:
    from ai4lab.cli.remote import _client as remote_client

    url, token = ctx.obj
    return remote_client(url, token)


@contextmanager
def _refused() -> Iterator[None]:
    """A request the platform refuses ends the command: its reason on one line, exit code 1."""
    try:
        yield
    except ApiError as e:
        fail(str(e), 1)


@contextmanager
def _bar(what: str, total: int) -> Iterator[Progress]:
    """A progress bar on stderr for a large file; nothing for a small one."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
        disable=total < BIG,
    )
    with progress:
        progress.add_task(what, total=total)
        yield progress


@app.command("ls")
def ls(
    ctx: typer.Context,
    path: str = typer.Argument("", help="a folder (or file) of my storage; default its root"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List a folder of my storage."""
    with _refused():
        entries = _client(ctx).ls(path)
    if as_json:
        out.print_json(json.dumps(entries))
        return
    table = Table("name", "size", "modified", box=None)
    for entry in entries:
        folder = entry["type"] == "directory"
        size = "" if folder else human_size(entry["size"])
        table.add_row(entry["name"] + ("/" if folder else ""), size, entry.get("modified") or "")
    out.print(table)


@app.command("put")
def put(
    ctx: typer.Context,
    local: Path = typer.Argument(..., help="a file, or a folder with --recursive"),
    path: str = typer.Argument("", help="where in my storage (a name ending in '/' is a folder); default the root"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="upload a folder with everything in it"),
) -> None:
    """Upload a file or a folder to my storage."""
    if not local.exists():
        fail(f"no such file or folder on this machine: {local}")
    if local.is_dir() and not recursive:
        fail(f"{local} is a folder: add --recursive to upload it with everything in it")
    client = _client(ctx)
    base = path if path and not path.endswith("/") else f"{path}{local.name}"
    files = (
        [(local, base)]
        if local.is_file()
        else [(f, f"{base}/{f.relative_to(local).as_posix()}") for f in sorted(local.rglob("*")) if f.is_file()]
    )
    for source, target in files:
        with _refused(), _bar(f"upload {source.name}", source.stat().st_size) as bar:
            task = bar.task_ids[0]
            entry = client.upload(source, target, progress=lambda n: bar.advance(task, n))  # noqa: B023
        out.print(f"{entry['path']}  {human_size(entry['size'])}", markup=False)


@app.command("get")
def get(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="a file of my storage"),
    local: Path = typer.Argument(Path("."), help="where to write it (a folder: keep the file's name)"),
) -> None:
    """Download a file of my storage."""
    target = local / Path(path).name if local.is_dir() else local
    if not target.parent.is_dir():
        fail(f"no such folder on this machine: {target.parent}")
    client = _client(ctx)
    with _refused():
        entry = client.ls(path)
        if not entry or entry[0]["type"] == "directory":
            fail(f"{path!r} is not a file of your storage: `ai4lab storage ls {path}` shows what is there", 1)
        with _bar(f"download {target.name}", entry[0]["size"]) as bar:
            client.get(path, target, progress=lambda n, _size: bar.advance(bar.task_ids[0], n))
    out.print(f"{target}  {human_size(target.stat().st_size)}", markup=False)


@app.command("rm")
def rm(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="a file or folder of my storage"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="delete a folder with everything in it"),
) -> None:
    """Delete a file (or, with --recursive, a folder) of my storage."""
    client = _client(ctx)
    with _refused():
        entries = client.ls(path)
        is_file = len(entries) == 1 and entries[0]["path"] == path.strip("/") and entries[0]["type"] == "file"
        if not is_file and not recursive:
            fail(f"{path!r} is a folder: add --recursive to delete it with everything in it")
        client.rm(path)
    out.print(f"deleted {path}", markup=False)


@app.command("mv")
def mv(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="a file or folder of my storage"),
    to: str = typer.Argument(..., help="its new path"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a file already there"),
) -> None:
    """Rename or move a file or folder within my storage."""
    with _refused():
        entry = _client(ctx).move(path, to, overwrite)
    out.print(f"{path} -> {entry['path']}", markup=False)


@app.command("mkdir")
def mkdir(ctx: typer.Context, path: str = typer.Argument(..., help="the new folder")) -> None:
    """Make a folder in my storage (and the folders above it)."""
    with _refused():
        entry = _client(ctx).mkdir(path)
    out.print(f"{entry['path']}/", markup=False)


@app.command("where")
def where(ctx: typer.Context) -> None:
    """Where my storage is: the platform's, or my own S3 or WebDAV server."""
    with _refused():
        found = _client(ctx).storage_where()
    _show_where(found)


def _show_where(found: dict) -> None:
    if found["source"] == "platform" and found["type"] == "local":
        out.print("the platform's storage (a folder on the platform)")
        return
    whose = "my own" if found["source"] == "own" else "the platform's"
    at = found["url"] + (f" (endpoint {found['endpoint_url']})" if found.get("endpoint_url") else "")
    out.print(f"{whose} {found['type']} storage at {at}, as {found['username'] or 'anonymous'}", markup=False)


@app.command("connect")
def connect_own(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="s3 or webdav"),
    url: str = typer.Argument(..., help="s3://BUCKET[/PREFIX], or https://HOST/remote.php/dav/files/USER (Nextcloud)"),
    username: str = typer.Option("", "--username", "-u", help="S3 access key id, or WebDAV user"),
    endpoint_url: str = typer.Option("", "--endpoint-url", help="S3 endpoint of MinIO or Ceph ('' : AWS)"),
    region: str = typer.Option("", help="S3 region"),
    vendor: str = typer.Option("other", help="WebDAV server: nextcloud, owncloud or other"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the secret key or password from stdin"),
) -> None:
    """Use my own S3 or WebDAV storage instead of the platform's (checked with its credentials first)."""
    import sys

    if kind not in ("s3", "webdav"):
        fail(f"storage type {kind!r}: use s3 or webdav")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("password", hide_input=True)
    extra = {"endpoint_url": endpoint_url, "region": region} if kind == "s3" else {"vendor": vendor}
    with _refused():
        found = _client(ctx).connect_storage(kind, url, username, password, **extra)
    _show_where(found)


@app.command("disconnect")
def disconnect_own(ctx: typer.Context) -> None:
    """Go back to the platform's storage (what is on my own server stays there)."""
    with _refused():
        found = _client(ctx).disconnect_storage()
    _show_where(found)
