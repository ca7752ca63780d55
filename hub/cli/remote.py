"""CLI commands that talk to a running platform through its API (``ai4lab.client``):
deploy, predict, deployments, logs, stop, ``module`` (export, new), ``pipeline`` and ``datasets``."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.table import Table

from ai4lab.cli.output import err, fail, out
from ai4lab.client import ApiError, Client

module_app = typer.Typer(help="AI modules: export one to run elsewhere, start a new one.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Pipelines: chain module or serverless deployments.", no_args_is_help=True)
secrets_app = typer.Typer(
    help="Your secrets (tokens, passwords) for your deployments and sessions; values are never shown.",
    no_args_is_help=True,
)
datasets_app = typer.Typer(
    help="Datasets: import one by Zenodo DOI or URL into datasets/<name>/ of your storage, list them.",
    no_args_is_help=True,
)

URL_HELP = "platform API URL (default $AI4LAB_API_URL, or this machine's platform)"
TOKEN_HELP = "hub API token (default $AI4LAB_API_TOKEN)"
SECRET_HELP = "name of one of your secrets to give it (ai4lab secrets ls), repeatable"
SECRETS_AS_HELP = "env: as environment variables; files: as files in $AI4LAB_SECRETS_DIR"


def _fail(message: str, code: int = 1) -> NoReturn:
    """Here most failures are the platform refusing a request: exit code 1 unless told otherwise."""
    fail(message, code)


def _client(url: str | None, token: str | None) -> Client:
    import os

    if not url and not os.environ.get("AI4LAB_API_URL"):
        from ai4lab.cli.main import load_settings

        url = load_settings().public_url + "/services/ai4lab"
    try:
        return Client(url, token)
    except ValueError as e:
        _fail(str(e), 2)
    raise AssertionError


def _fields(args: list[str]) -> dict[str, str]:
    fields = {}
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or not key:
            _fail(f"--arg takes name=value, got {a!r}", 2)
        fields[key] = value
    return fields


def register(app: typer.Typer) -> None:
    @app.command()
    def deploy(
        item: str = typer.Argument(..., help="catalog id of the module"),
        cpu: float | None = typer.Option(None, help="CPU cores"),
        ram: int | None = typer.Option(None, help="RAM in MB"),
        title: str = typer.Option("", help="a title for the deployment"),
        weights: str | None = typer.Option(None, help="weights file in your storage"),
        no_wait: bool = typer.Option(False, "--no-wait", help="return at once, while it starts"),
        serverless: bool = typer.Option(False, "--serverless", help="as an OSCAR service (serverless inference)"),
        secret: list[str] = typer.Option([], "--secret", help=SECRET_HELP),
        secrets_as: str = typer.Option("env", "--secrets-as", help=SECRETS_AS_HELP),
        url: str | None = typer.Option(None, help=URL_HELP),
        token: str | None = typer.Option(None, help=TOKEN_HELP),
    ) -> None:
        """Start an inference deployment of a module: a DEEPaaS server, or an OSCAR service with --serverless."""
        hardware = {k: v for k, v in (("cpu_num", cpu), ("ram", ram)) if v is not None}
        try:
            client = _client(url, token)
            dep = (
                client.deploy_serverless(item, title=title)
                if serverless
                else client.deploy(
                    item,
                    title=title,
                    weights=weights,
                    wait=not no_wait,
                    secrets=secret,
                    secrets_as=secrets_as,
                    **hardware,
                )
            )
        except (ApiError, TimeoutError) as e:
            _fail(str(e))
        out.print(f"{dep['id']} {dep['status']}" + (f"  {dep['endpoints'].get('ui', '')}" if dep["endpoints"] else ""))
        for warning in dep.get("warnings", []):  # what the metadata recommends that this deployment goes without
            err.print(f"warning: {warning}", highlight=False)

    @app.command()
    def predict(
        deployment: str = typer.Argument(..., help="deployment id"),
        file: list[str] = typer.Option([], "--file", help="FIELD=PATH or PATH (the module's file field)"),
        arg: list[str] = typer.Option([], "--arg", help="name=value, repeatable"),
        url: str | None = typer.Option(None, help=URL_HELP),
        token: str | None = typer.Option(None, help=TOKEN_HELP),
    ) -> None:
        """Predict with a deployment; prints the JSON answer."""
        client = _client(url, token)
        files = {}
        for f in file:
            name, sep, path = f.partition("=")
            if not sep:
                name, path = "", f
            if not Path(path).is_file():
                _fail(f"no such file: {path}", 2)
            files[name] = path
        if "" in files:  # a bare path: the module's only file field, read from its Swagger
            try:
                file_fields = _file_fields(client, client.deployment(deployment))
            except ApiError as e:
                _fail(str(e))
            if len(file_fields) != 1:
                fields = ", ".join(file_fields) or "none"
                _fail(f"say which field the file is for: --file FIELD=PATH (fields: {fields})", 2)
            files[file_fields[0]] = files.pop("")
        try:
            answer = client.predict(deployment, files or None, **_fields(arg))
        except ApiError as e:
            _fail(str(e))
        sys.stdout.write(json.dumps(answer, indent=1) + "\n")

    @app.command("deployments")
    def list_deployments(
        kind: str | None = typer.Option(None),
        as_json: bool = typer.Option(False, "--json"),
        url: str | None = typer.Option(None, help=URL_HELP),
        token: str | None = typer.Option(None, help=TOKEN_HELP),
    ) -> None:
        """My deployments."""
        try:
            items = _client(url, token).deployments(kind)
        except ApiError as e:
            _fail(str(e))
        if as_json:
            sys.stdout.write(json.dumps(items, indent=1) + "\n")
            return
        table = Table("id", "kind", "name", "status", "reason", "created")
        for d in items:
            table.add_row(
                d["id"],
                d["kind"],
                d["name"],
                d["status"],
                (d["status_reason"] or "")[:50],
                (d["created_at"] or "")[:19],
            )
        out.print(table)

    @app.command()
    def logs(
        deployment: str = typer.Argument(...),
        tail: int | None = typer.Option(None, min=1),
        follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines until it ends"),
        url: str | None = typer.Option(None, help=URL_HELP),
        token: str | None = typer.Option(None, help=TOKEN_HELP),
    ) -> None:
        """Logs of a deployment."""
        client = _client(url, token)
        try:
            if not follow:
                sys.stdout.write(client.logs(deployment, tail))
                return
            for line in client.follow_logs(deployment):
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
        except ApiError as e:
            _fail(str(e))

    @app.command()
    def train(
        item: str = typer.Argument(..., help="catalog id of the module"),
        data: str | None = typer.Option(None, "--data", help="dataset: a folder or file in your storage"),
        arg: list[str] = typer.Option([], "--arg", help="train argument name=value, repeatable"),
        gpu: int = typer.Option(0, "--gpu", help="GPUs"),
        cpu: float | None = typer.Option(None),
        ram: int | None = typer.Option(None, help="RAM in MB"),
        init_weights: str | None = typer.Option(None, "--from", help="start from the model of this training"),
        workers: int = typer.Option(
            1, "--workers", min=1, max=8, help="processes of a data-parallel training (torch.distributed)"
        ),
        title: str = typer.Option(""),
        wait: bool = typer.Option(False, "--wait", help="wait until it ends"),
        secret: list[str] = typer.Option([], "--secret", help=SECRET_HELP),
        secrets_as: str = typer.Option("env", "--secrets-as", help=SECRETS_AS_HELP),
        url: str | None = typer.Option(None, help=URL_HELP),
        token: str | None = typer.Option(None, help=TOKEN_HELP),
    ) -> None:
        """Train a module on your data (queued when your quota is full)."""
        hardware = {k: v for k, v in (("cpu_num", cpu), ("ram", ram), ("gpu_num", gpu or None)) if v is not None}
        try:
            dep = _client(url, token).train(
                item,
                dataset=data,
                init_weights=init_weights,
                workers=workers,
                title=title,
                wait=wait,
                hardware=hardware,
                train_args=_fields(arg),
                secrets=secret,
                secrets_as=secrets_as,
            )
        except (ApiError, TimeoutError) as e:
            _fail(str(e))
        reason = f"  ({dep['status_reason'].splitlines()[0]})" if dep["status_reason"] else ""
        out.print(f"{dep['id']} {dep['status']}{reason}", markup=False)
        if wait and dep["status"] != "succeeded":
            raise typer.Exit(1)

    @app.command()
    def stop(
        deployment: str = typer.Argument(...),
        url: str | None = typer.Option(None, help=URL_HELP),
        token: str | None = typer.Option(None, help=TOKEN_HELP),
    ) -> None:
        """Stop a deployment."""
        try:
            dep = _client(url, token).stop(deployment)
        except ApiError as e:
            _fail(str(e))
        out.print(f"{dep['id']} {dep['status']}")

    app.command("cancel", help="Cancel a training or batch job (the same as stop).")(stop)
    app.add_typer(module_app, name="module")
    app.add_typer(pipeline_app, name="pipeline")
    app.add_typer(secrets_app, name="secrets")
    app.add_typer(datasets_app, name="datasets")


def _file_fields(client: Client, dep: dict) -> list[str]:
    if dep["kind"] == "pipeline":  # the first step takes the upload, whatever its name
        return ["file"]
    if dep["kind"] == "serverless":
        return [dep["spec"]["file_arg"]] if dep["spec"].get("file_arg") else []
    swagger = client._call("GET", f"/deployments/{dep['id']}/api/swagger.json")
    names = []
    for path, ops in swagger.get("paths", {}).items():
        if path.endswith("/predict/"):
            for p in ops.get("post", {}).get("parameters", []):
                if p.get("type") == "file":
                    names.append(p["name"])
    return names


@module_app.command("new")
def new(
    name: str = typer.Argument(..., help="module name: lower-case letters, digits and '-'"),
    dest: Path = typer.Option(Path("."), "--dest", help="folder in which the module folder is created"),
    title: str | None = typer.Option(None, help="title shown in the marketplace"),
    summary: str | None = typer.Option(None, help="one-line summary"),
    author: str | None = typer.Option(None),
    author_email: str | None = typer.Option(None),
    task: str | None = typer.Option(None, help="AI4OS task, e.g. 'Classification'"),
    library: str | None = typer.Option(None, help="AI4OS library, e.g. 'PyTorch'"),
    data_type: str | None = typer.Option(None, help="AI4OS data type, e.g. 'Image'"),
) -> None:
    """Start a new AI module from the template: DEEPaaS API, metadata, tests, Dockerfile."""
    from ai4lab.catalog.module_template import new_module

    answers = {
        k: v
        for k, v in (
            ("title", title),
            ("summary", summary),
            ("author", author),
            ("author_email", author_email),
            ("task", task),
            ("library", library),
            ("data_type", data_type),
        )
        if v is not None
    }
    try:
        folder = new_module(name, dest, answers)
    except (ValueError, FileExistsError) as e:
        _fail(str(e).splitlines()[0], 2)
    out.print(f"created {folder}")
    out.print(
        f"next: cd {folder} && pip install -e '.[test]' && pytest && deepaas-run --listen-port 5000", markup=False
    )


@module_app.command("export")
def export(item_id: str = typer.Argument(..., help="catalog id of the module")) -> None:
    """How to run a module outside the platform: docker run of its image, or pip install + deepaas-run."""
    from ai4lab.cli.catalog import _catalog

    item = _catalog().get("module", item_id)
    if item is None:
        _fail(f"no module {item_id!r} in the catalog: try 'ai4lab catalog search'", 1)
    lines = [f"# {item.title} ({item.id}): run it on your own machine or in a cloud", ""]
    if item.run.docker_image:
        lines += [
            "# with Docker (the module's image; add --gpus all on a GPU machine):",
            (
                f"docker run -ti -p 5000:5000 {item.run.docker_image}:{item.run.docker_tag} "
                "deepaas-run --listen-ip 0.0.0.0 --listen-port 5000"
            ),
            "# then open http://127.0.0.1:5000/ui",
            "",
        ]
    if item.run.package_path and item.run.entry_point:
        pkg = shlex.quote(item.run.package_path)
        lines += [
            "# with pip, in a fresh virtual environment:",
            "python3 -m venv .venv-" + item.id,
            f". .venv-{item.id}/bin/activate",
            f"pip install {pkg}",
            f"deepaas-run --listen-ip 127.0.0.1 --listen-port 5000 --model-name {item.run.entry_point}",
            "# then open http://127.0.0.1:5000/ui",
        ]
    if len(lines) == 2:
        _fail(f"{item_id} has neither an image nor a local package to export", 1)
    sys.stdout.write("\n".join(lines) + "\n")


@pipeline_app.command("create")
def pipeline_create(
    steps: list[str] = typer.Argument(
        ...,
        help="deployment ids in order; DEP:file passes the step's file output "
        "on (DEP:json, the default, its JSON); DEP:file:FIELD sets the "
        "argument that receives the previous output",
    ),
    title: str = typer.Option("", help="a title for the pipeline"),
    url: str | None = typer.Option(None, help=URL_HELP),
    token: str | None = typer.Option(None, help=TOKEN_HELP),
) -> None:
    """Create a pipeline: the output of each step becomes the input of the next."""
    parsed = []
    for text in steps:
        dep_id, _, rest = text.partition(":")
        output, _, field = rest.partition(":")
        if output not in ("", "json", "file"):
            _fail(f"step {text!r}: the output is json or file, e.g. {dep_id}:file", 2)
        parsed.append({"deployment": dep_id, "output": output or "json"} | ({"input_field": field} if field else {}))
    try:
        dep = _client(url, token).pipeline(parsed, title=title)
    except ApiError as e:
        _fail(str(e))
    out.print(f"{dep['id']} {dep['status']}  {dep['name']}", markup=False)


@pipeline_app.command("run")
def pipeline_run(
    pipeline: str = typer.Argument(..., help="pipeline id"),
    file: Path = typer.Argument(..., help="the input file of the first step"),
    url: str | None = typer.Option(None, help=URL_HELP),
    token: str | None = typer.Option(None, help=TOKEN_HELP),
) -> None:
    """Run a pipeline on a file; prints the final predictions and each step's output and time as JSON."""
    if not file.is_file():
        _fail(f"no such file: {file}", 2)
    try:
        answer = _client(url, token).predict(pipeline, {"file": file})
    except ApiError as e:
        _fail(str(e))
    sys.stdout.write(json.dumps(answer, indent=1) + "\n")


@secrets_app.command("ls")
def secrets_ls(
    url: str | None = typer.Option(None, help=URL_HELP),
    token: str | None = typer.Option(None, help=TOKEN_HELP),
) -> None:
    """List your secrets by name, with when they were created and last changed (never their values)."""
    try:
        rows = _client(url, token).secrets()
    except ApiError as e:
        _fail(str(e))
    if not rows:
        err.print("no secrets yet: add one with 'ai4lab secrets set NAME'", highlight=False)
        return
    table = Table("name", "created", "updated")
    for row in rows:
        table.add_row(row["name"], row.get("created_at") or "", row.get("updated_at") or "")
    out.print(table)


def _secret_value(from_file: Path | None) -> str:
    """The value to store: from a file, from standard input when it is not a terminal, else asked without echo.

    Never from the command line: arguments are visible to every user in ``ps`` and kept in shell history.
    """
    if from_file is not None:
        try:
            return from_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            _fail(f"cannot read {from_file}: {e}", 2)
    if not sys.stdin.isatty():
        value = sys.stdin.read()
        return value[:-1] if value.endswith("\n") else value  # `echo token |` adds one newline
    return str(typer.prompt("value", hide_input=True, confirmation_prompt=True))


@secrets_app.command("set")
def secrets_set(
    name: str = typer.Argument(..., help="letters, digits and _ (e.g. HF_TOKEN): the variable it is given as"),
    replace: bool = typer.Option(False, "--replace", help="replace the value of an existing secret"),
    from_file: Path | None = typer.Option(
        None, "--from-file", help="read the value from this file (else standard input, or a hidden prompt)"
    ),
    url: str | None = typer.Option(None, help=URL_HELP),
    token: str | None = typer.Option(None, help=TOKEN_HELP),
) -> None:
    """Store a secret; the value comes from standard input, a hidden prompt or --from-file, never from arguments."""
    from ai4lab.core.user_secrets import name_problem

    if problem := name_problem(name):
        _fail(problem, 2)
    client = _client(url, token)
    value = _secret_value(from_file)
    try:
        entry = client.set_secret(name, value, replace=replace)
    except ApiError as e:
        _fail(str(e))
    out.print(f"{entry['name']} stored", markup=False)


@secrets_app.command("rm")
def secrets_rm(
    name: str = typer.Argument(..., help="the secret's name"),
    url: str | None = typer.Option(None, help=URL_HELP),
    token: str | None = typer.Option(None, help=TOKEN_HELP),
) -> None:
    """Delete a secret (deployments started later cannot use it any more)."""
    try:
        _client(url, token).delete_secret(name)
    except ApiError as e:
        _fail(str(e))
    out.print(f"{name} deleted", markup=False)


@datasets_app.command("import")
def datasets_import(
    source: str = typer.Argument(..., help="Zenodo DOI (10.5281/zenodo.123), Zenodo record URL or HTTPS URL"),
    name: str | None = typer.Option(None, "--name", help="folder under datasets/ (default: from the record's title)"),
    replace: bool = typer.Option(False, "--replace", help="replace datasets/<name> when it exists"),
    sha256: str | None = typer.Option(None, "--sha256", help="plain URLs: the file's SHA-256, verified"),
    md5: str | None = typer.Option(None, "--md5", help="plain URLs: the file's MD5, verified"),
    wait: bool = typer.Option(False, "--wait", help="wait until it ends"),
    url: str | None = typer.Option(None, help=URL_HELP),
    token: str | None = typer.Option(None, help=TOKEN_HELP),
) -> None:
    """Import a dataset (a job: `ai4lab logs <id>`, `ai4lab cancel <id>`); prints its id, status and folder."""
    client = _client(url, token)
    try:
        dep = client.import_dataset(source, name=name, replace=replace, sha256=sha256, md5=md5)
        if wait:
            dep = client.wait_ended(dep)
    except (ApiError, TimeoutError) as e:
        _fail(str(e))
    reason = f"  ({dep['status_reason'].splitlines()[0]})" if dep["status_reason"] else ""
    out.print(f"{dep['id']} {dep['status']} {dep['spec']['dataset']}{reason}", markup=False)
    if wait and dep["status"] != "succeeded":
        raise typer.Exit(1)


@datasets_app.command("ls")
def datasets_ls(
    as_json: bool = typer.Option(False, "--json"),
    url: str | None = typer.Option(None, help=URL_HELP),
    token: str | None = typer.Option(None, help=TOKEN_HELP),
) -> None:
    """My datasets, with where each came from."""
    try:
        items = _client(url, token).datasets()
    except ApiError as e:
        _fail(str(e))
    if as_json:
        sys.stdout.write(json.dumps(items, indent=1) + "\n")
        return
    table = Table("path", "files", "bytes", "source", "title", "license")
    for d in items:
        card = d.get("card") or {}
        source = f"doi:{card['doi']}" if card.get("doi") else card.get("source") or ""
        table.add_row(
            d["path"], str(d["files"]), str(d["bytes"]), source, card.get("title") or "", card.get("license") or ""
        )
    out.print(table)
