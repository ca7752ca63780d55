"""Join a Flower deployment of ai4lab as a client: ``python -m ai4lab.flower.client``.

::

    AI4LAB_FLOWER_TOKEN=<token> python -m ai4lab.flower.client \\
        --address HOST:PORT --root-certificates server.pem --module ai4lab-digits --data site-a.csv

From anywhere ai4lab is installed (a session, another backend, another site):
it builds (once, cached) the module's Flower environment -- the module's own
package with its ``flower`` extra, see :func:`ai4lab.core.envs.ensure_env` -- and
runs a Flower SuperNode in it (``node.py``) that authenticates with the token.
The server then ships its ClientApp, which calls the module's Flower adapter
(``<package>.flower``: the module's own training on ``--data`` as the fit step).

The token is read from ``--token`` or ``AI4LAB_FLOWER_TOKEN`` and handed to the
node through its environment, never on a command line and never printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from ai4lab.core.envs import ensure_env, env_bin
from ai4lab.core.settings import bundled_catalog_path

NODE = Path(__file__).resolve().parent / "node.py"
TOKEN_VAR = "AI4LAB_FLOWER_TOKEN"


class ClientError(ValueError):
    """Bad client arguments; the message says what to fix."""


def module_folder(module: str) -> Path:
    """A catalog module id of the bundled catalog (``ai4lab-digits``) or a module's folder."""
    path = Path(module).expanduser()
    if path.is_dir():
        return path.resolve()
    bundled = bundled_catalog_path() / "modules" / module
    if bundled.is_dir():
        return bundled
    raise ClientError(f"--module: {module!r} is neither a folder nor a module of the bundled catalog")


def adapter_name(folder: Path) -> str:
    """``<package>.flower``: the module's Flower adapter (its package named in pyproject.toml)."""
    try:
        data = tomllib.loads((folder / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ClientError(f"--module: cannot read {folder / 'pyproject.toml'}: {e}") from None
    packages = data.get("tool", {}).get("setuptools", {}).get("packages") or []
    package = packages[0] if packages else data.get("project", {}).get("name", folder.name).replace("-", "_")
    if "flower" not in data.get("project", {}).get("optional-dependencies", {}):
        raise ClientError(f"--module: {folder.name} has no 'flower' extra: it does not offer a Flower client")
    return f"{package}.flower"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def certificate_file(root_certificates: str | Path) -> Path:
    """A file holding the server's certificate: ``root_certificates`` is that file or the PEM text itself."""
    text = str(root_certificates)
    if text.lstrip().startswith("-----BEGIN"):
        fd, name = tempfile.mkstemp(prefix="ai4lab-flower-", suffix=".pem")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return Path(name)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ClientError(f"--root-certificates: {root_certificates} is neither a file nor a PEM certificate")
    return path.resolve()


def command(
    address: str,
    module: str,
    data: str,
    *,
    max_wait: float | None = None,
    envs_dir: Path | None = None,
    root_certificates: str | Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The SuperNode command and environment (without the token) for one client.

    With ``root_certificates`` (the server's certificate, a file or PEM text) the
    connection is HTTPS and bound to that server; without it, plain HTTP.
    """
    if ":" not in address or not address.rsplit(":", 1)[1].isdigit():
        raise ClientError(f"--address: expected HOST:PORT, got {address!r}")
    data_path = Path(data).expanduser().resolve()
    if not data_path.exists():
        raise ClientError(f"--data: {data} does not exist")
    if "'" in str(data_path):
        raise ClientError("--data: the path must not contain a single quote")
    folder = module_folder(module)
    adapter = adapter_name(folder)
    env_dir = ensure_env(folder, envs_dir, extras=("flower",))
    tls = ["--root-certificates", str(certificate_file(root_certificates))] if root_certificates else ["--insecure"]
    cmd = [
        str(env_bin(env_dir, "python")),
        str(NODE),
        *tls,
        "--superlink",
        address,
        "--host",
        "127.0.0.1",
        "--port",
        str(_free_port()),
        "--node-config",
        f"module='{adapter}' data='{data_path}'",
    ]
    if max_wait:
        cmd += ["--max-wait-time", str(max_wait)]
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ", "HOME")}
    env.update(
        {
            "PATH": os.pathsep.join([str(env_dir / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
            "FLWR_HOME": tempfile.mkdtemp(prefix="ai4lab-flower-node-"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return cmd, env


class ClientProcess(subprocess.Popen[bytes]):
    """The SuperNode process; ``terminate``/``kill`` signal its whole process group.

    Why: the SuperNode starts flwr's SuperExec, which would outlive a signal sent to the
    SuperNode alone (left running, orphaned, in the user's session).
    """

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.killpg(self.pid, sig)  # its own session (start_new_session): the group is its pid
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def join(
    address: str,
    token: str,
    module: str,
    data: str,
    *,
    root_certificates: str | Path | None = None,
    max_wait: float | None = None,
    log: Path | None = None,
    envs_dir: Path | None = None,
) -> ClientProcess:
    """Start a client process (a SuperNode) that joins the deployment at ``address``; return it.

    ``root_certificates``: the server's certificate (PEM text or file) shown with
    the token, when the server speaks TLS (the platform's default).
    ``log``: file for its output (default: inherit this process's stdout/stderr).
    Stop it with ``proc.terminate()`` (it and what it started); it also stops by itself when the server
    refuses it.
    """
    if not token:
        raise ClientError(f"no token: pass --token or set {TOKEN_VAR} (the deployment's owner sees it)")
    cmd, env = command(address, module, data, max_wait=max_wait, envs_dir=envs_dir, root_certificates=root_certificates)
    env[TOKEN_VAR] = token
    out = open(log, "ab") if log else None  # noqa: SIM115 - handed to the child
    try:
        return ClientProcess(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if out:
            out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ai4lab.flower.client", description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="HOST:PORT of the Flower deployment")
    parser.add_argument(
        "--token", default=os.environ.get(TOKEN_VAR, ""), help=f"the deployment's token (default: ${TOKEN_VAR})"
    )
    parser.add_argument("--module", default="ai4lab-digits", help="catalog module id or module folder")
    parser.add_argument("--data", required=True, help="local training data (as the module's train accepts)")
    parser.add_argument(
        "--root-certificates",
        default=os.environ.get("AI4LAB_FLOWER_CERT") or None,
        help="file with the server's certificate (shown with the token); omit for a plain-HTTP "
        "server (default: $AI4LAB_FLOWER_CERT)",
    )
    parser.add_argument(
        "--max-wait", type=float, default=None, help="give up after this many seconds without reaching the server"
    )
    args = parser.parse_args(argv)
    try:
        proc = join(
            args.address,
            args.token,
            args.module,
            args.data,
            root_certificates=args.root_certificates,
            max_wait=args.max_wait,
        )
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
