"""Where the code that user accounts execute lives, and which Python builds it.

Why a module of its own: the platform (root) and the processes it starts for
users (per-user system accounts) see the file system differently. Root's
Python here is pyenv's under ``/root`` (mode 0700) and root's caches are in
``/root/.cache``: a user's process cannot execute any of it. So every
environment a user process runs (module environments, the session
environment, code-server, the runner scripts) is built under a runtime prefix
they can read and execute but not write, from a Python they can run.
``scripts/install.sh`` follows the same rules for the parts it builds.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "default_runtime_dir",
    "default_user_python",
    "make_readable",
    "public_dir",
    "python_version",
    "readable_copy",
    "runner_scripts",
]

#: Scripts run by a module's own Python (they import each other, so they travel together).
RUNNERS = ("oneshot.py", "train_runner.py", "batch_runner.py", "dataset_runner.py")


def default_runtime_dir() -> Path:
    """``$AI4LAB_RUNTIME_DIR``, else ``/opt/ai4lab`` for root, else ``~/.cache/ai4lab``."""
    value = os.environ.get("AI4LAB_RUNTIME_DIR")
    if value:
        return Path(value).expanduser()
    return Path("/opt/ai4lab") if os.geteuid() == 0 else Path.home() / ".cache" / "ai4lab"


def default_user_python() -> Path:
    """``$AI4LAB_USER_PYTHON``, else Debian's ``/usr/bin/python3`` for root, else the running Python.

    Root's own interpreter may live where users cannot reach (pyenv under
    ``/root``); the system Python is world-executable.
    """
    value = os.environ.get("AI4LAB_USER_PYTHON")
    if value:
        return Path(value)
    debian = Path("/usr/bin/python3")
    if os.geteuid() == 0 and debian.exists():
        return debian
    return Path(sys.executable)


@functools.lru_cache(maxsize=8)
def python_version(python: str) -> str:
    """``sys.version`` of another interpreter (environments are tied to it)."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        return sys.version
    return subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def public_dir(path: Path, mode: int = 0o755) -> Path:
    """Create ``path`` and any missing parents readable and traversable by everyone (not writable)."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        os.chmod(folder, 0o755)
    if missing:
        os.chmod(path, mode)
    return Path(path)


def make_readable(path: Path) -> None:
    """Owner may write; everyone may read and traverse (and execute what is executable)."""
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                mode = os.stat(p).st_mode
                os.chmod(p, 0o755 if mode & 0o100 else 0o644)


def readable_copy(folder: Path, kind: str, runtime_dir: Path | None = None, names: tuple[str, ...] = ()) -> Path:
    """A copy of ``folder`` (or of its files ``names``) under the runtime prefix, where user accounts can read it.

    Why: the platform's own files may sit where users cannot reach (a
    checkout below ``/root``). The copy is named after the content's hash, so
    a process never reads a half-written or stale copy, and a new version
    gets a new folder.
    """
    folder = Path(folder)
    files = (
        [folder / n for n in names]
        if names
        else sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    )
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
    target = (runtime_dir or default_runtime_dir()) / kind / f"{folder.name}-{h.hexdigest()[:16]}"
    if not target.is_dir():
        public_dir(target.parent)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        for f in files:
            dest = tmp / f.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        make_readable(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process put it there first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def shipped(*parts: str) -> Path:
    """A file or folder the package ships from the source tree's ``config/`` (``ai4lab.config``)."""
    import ai4lab.config

    return Path(ai4lab.config.__file__).resolve().parent.joinpath(*parts)


def runner_scripts(runtime_dir: Path | None = None) -> Path:
    """The runner scripts (they import each other, so they travel together), where user accounts can read them."""
    return readable_copy(Path(__file__).resolve().parents[1] / "deploy", "runners", runtime_dir, RUNNERS)


#: What package tools (uv, pip, curl) need from the machine: certificates, proxies, indexes and
#: wheel folders. Services get them to build module environments; sessions get them so that
#: ``pip`` / ``uv`` in a terminal or notebook work as on the machine itself.
PACKAGE_TOOL_PREFIXES = ("UV_", "PIP_")
PACKAGE_TOOL_VARS = frozenset(
    {
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)


def package_tool_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables of ``environ`` (default: this process's) that package tools need."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith(PACKAGE_TOOL_PREFIXES) or k in PACKAGE_TOOL_VARS}
