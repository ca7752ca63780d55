"""One cached virtual environment per catalog item (AI module, tool).

Why: catalog items pin libraries the platform cannot share. DEEPaaS needs
``webargs<6``, ``apispec<4`` and ``marshmallow<4``; real AI4OS modules pin
older things still. On a cluster every module runs in its own image; on one
machine the equivalent is one virtual environment per item, built from the
item's own ``pyproject.toml`` and kept until its sources change. ``uv`` (a
dependency of the platform) builds one in seconds from its package cache.

Built the AI4OS way: an AI4OS image clones the module's repository, runs
``pip install -r requirements.txt`` and then ``pip install -e .`` in it, and
starts ``deepaas-run`` from there; modules from the official template find
``ai4-metadata.yml``, ``data/`` and ``models/`` relative to the repository.
So the environment holds a copy of the repository (``srv/<name>``, like the
image's ``/srv``), installs its ``requirements.txt`` and then the package,
editable unless the module's Dockerfile installs it with ``pip install .``.
Jobs then run in a private working copy of that repository (see
``ai4lab.deploy.module_code``).

How:

* The environment's name carries a hash of the item's sources (file names and
  contents, not mtimes: a fresh checkout must not rebuild anything), the
  extras and the Python version, so a changed module gets a new environment
  and an unchanged one is reused.
* It is built in place, and its marker file (``ai4lab-env.json``) is
  written last: an environment with a marker is a complete one, and one
  without is removed and built again. (In place because an editable install
  records where the repository is.)
* An ``fcntl`` lock per environment makes a second process wait for the first
  build and then reuse it, instead of building the same thing twice.
* The sources are copied before installing: setuptools writes ``build/`` and
  ``*.egg-info`` into the tree it builds, and two builds of one tree at once
  would trip over each other.

Usage::

    from ai4lab.core.envs import ensure_env, env_bin

    env = ensure_env(Path("config/catalog/modules/ai4lab-digits"))
    subprocess.Popen([env_bin(env, "deepaas-run"), "--listen-port", "5000"])
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ai4lab.core.isolation import (
    NOBODY,
    Identity,
    chown_tree,
    give_tree,
    identity_of,
    preexec,
    private_dir,
    reachable_by_others,
    user_env,
)
from ai4lab.core.runtime import (
    default_runtime_dir,
    default_user_python,
    make_readable,
    public_dir,
    python_version,
    readable_copy,
)

__all__ = [
    "EnvBuildError",
    "default_cache_root",
    "ensure_env",
    "env_bin",
    "env_info",
    "env_repo",
    "find_uv",
    "installs_editable",
    "source_hash",
]

#: Environment variable that moves the cache (e.g. onto a bigger disk).
ENVS_DIR_VAR = "AI4LAB_ENVS_DIR"
#: ``--no-config``: a uv.toml or [tool.uv] in the module must not change how the platform builds.
#: ``--compile-bytecode``: the environment is read-only to the user accounts that run it, so
#: without .pyc files written here every start of a module server or training would compile
#: all its imports again (seconds of CPU each time; a JupyterLab session took 17 s instead of 2).
UV_INSTALL_FLAGS = ("--no-config", "--compile-bytecode")
#: Metadata written into each environment (what it was built from, what it holds).
MARKER = "ai4lab-env.json"
#: Bumped when the layout of an environment changes, so old ones are not reused
#: (3: bytecode compiled at build time).
LAYOUT_VERSION = "3"

#: Folders that are by-products of builds or tool caches, not sources.
_IGNORED_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        "build",
        "dist",
        "node_modules",
        ".ipynb_checkpoints",
    }
)
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".swp")
#: Lines of uv's output kept in an EnvBuildError.
_TAIL_LINES = 40


class EnvBuildError(RuntimeError):
    """Building an item's environment failed; carries the end of uv's output.

    The tail is what a user (or a spawn progress message) needs to see: the
    resolver conflict or the build error, not just "exit status 1".
    """

    def __init__(self, item_dir: Path, step: str, returncode: int | None, output: str) -> None:
        self.item_dir = Path(item_dir)
        self.step = step
        self.returncode = returncode
        lines = output.strip().splitlines()
        self.output_tail = "\n".join(lines[-_TAIL_LINES:])
        status = "timed out" if returncode is None else f"exit status {returncode}"
        super().__init__(
            f"building the environment of {self.item_dir.name} failed at {step!r} ({status}):\n{self.output_tail}"
        )


def default_cache_root() -> Path:
    """``$AI4LAB_ENVS_DIR``, else ``<runtime dir>/envs`` (``/opt/ai4lab/envs`` as root).

    Not in the platform state: environments are disposable (rebuilt from
    sources in seconds), can be large, and user accounts must be able to run
    them (see ``ai4lab.core.runtime``).
    """
    value = os.environ.get(ENVS_DIR_VAR)
    return Path(value).expanduser() if value else default_runtime_dir() / "envs"


def find_uv() -> Path:
    """The ``uv`` installed next to the running interpreter (a platform dependency), else on PATH.

    Next to ``sys.executable`` first, so that the platform uses the uv version
    it was installed with, whatever is first on the user's PATH.
    """
    local = Path(sys.executable).parent / "uv"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which("uv")
    if found:
        return Path(found)
    raise FileNotFoundError(f"uv not found next to {sys.executable} nor on PATH (pip install uv)")


def _source_files(item_dir: Path) -> Iterator[Path]:
    """Source files of an item, in a stable order, without build by-products."""
    for root, dirs, files in os.walk(item_dir):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS and not d.endswith(_IGNORED_SUFFIXES))
        for name in sorted(files):
            if not name.endswith(_IGNORED_SUFFIXES):
                yield Path(root) / name


def source_hash(
    item_dir: Path, extras: Sequence[str] = (), python: str | None = None, find_links: Sequence[str] | None = None
) -> str:
    """Hex digest identifying what an environment is built from.

    Covers the contents and relative paths of the sources (so edits, added and
    removed files count, and touching or re-cloning does not), the extras, the
    interpreter (an environment is tied to its Python) and the folders of wheels
    looked in (default: :func:`default_find_links`), which change what is installed.
    """
    item_dir = Path(item_dir)
    h = hashlib.sha256()
    version = python_version(str(python or default_user_python()))
    h.update(f"ai4lab-env/{LAYOUT_VERSION}\0{sys.implementation.cache_tag}\0{version}\0".encode())
    h.update(("extras:" + ",".join(sorted(set(extras))) + "\0").encode())
    links = default_find_links() if find_links is None else find_links
    if links:
        h.update(("links:" + "\0".join(links) + "\0").encode())
    for path in _source_files(item_dir):
        h.update(path.relative_to(item_dir).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def env_bin(env_dir: Path, name: str) -> Path:
    """Path of the executable ``name`` (``python``, ``deepaas-run``, ...) inside an environment.

    Raises ``FileNotFoundError`` naming the environment, which is clearer than
    the ``ENOENT`` a subprocess would report.
    """
    path = Path(env_dir) / ("Scripts" if os.name == "nt" else "bin") / name
    if not path.exists():
        raise FileNotFoundError(f"{name!r} is not installed in the environment {env_dir}")
    return path


def _env_name(item_dir: Path, digest: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", item_dir.resolve().name).strip("-.") or "item"
    return f"{safe}-{digest[:16]}"


@contextlib.contextmanager
def _locked(lock_path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Exclusive ``flock`` on ``lock_path``: released by the kernel even if the holder dies.

    ``on_wait`` is called once when another process holds it (a build under way elsewhere).
    """
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def builder_of(item_dir: Path) -> Identity | None:
    """Who builds an item's environment: building a package runs its code (``setup.py``, build backends).

    A package folder owned by a user account (a published package, copied
    into the platform's catalog area as theirs) is built by that account;
    any other by ``nobody``. None when the platform does not isolate users
    (not root, or ``AI4LAB_ISOLATION=off``): the build runs as the platform.
    """
    if os.geteuid() != 0 or os.environ.get("AI4LAB_ISOLATION") == "off":
        return None
    uid = Path(item_dir).stat().st_uid
    entry = pwd.getpwuid(uid) if uid != 0 else pwd.getpwnam(NOBODY)
    return identity_of(entry.pw_name, entry, home=None if uid != 0 else "/nonexistent")


def _run(
    cmd: list[str],
    *,
    item_dir: Path,
    step: str,
    cwd: Path,
    timeout: float,
    builder: Identity | None = None,
    tmp: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run one build step; its output is returned (and given line by line to ``on_line``).

    A failure raises :class:`EnvBuildError` with the end of the output: what a user needs to see.
    """
    if builder is None:
        env = {**os.environ, "NO_COLOR": "1"}
    else:  # nothing of the platform's environment (tokens, settings) reaches the package's build code
        caches = public_dir(default_runtime_dir() / "build-cache", 0o711)
        cache = private_dir(caches / str(builder.uid), builder, caches)
        env = user_env(builder, tmp or cwd, {"NO_COLOR": "1", "UV_CACHE_DIR": str(cache), "TMPDIR": str(tmp or cwd)})
        env.update(
            {
                k: v
                for k, v in os.environ.items()
                if k.startswith(("UV_INDEX", "PIP_INDEX", "SSL_CERT"))
                or k.lower() in ("http_proxy", "https_proxy", "no_proxy")
            }
        )
    timed_out = threading.Event()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
        start_new_session=True,  # a timeout kills what the step started too (build backends)
        preexec_fn=preexec(builder) if builder is not None else None,
    )

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # streamed: a session start shows the build as it goes
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
    out = "".join(lines)
    if timed_out.is_set():
        raise EnvBuildError(item_dir, step, None, out + f"\n(timed out after {timeout:.0f}s)")
    if proc.returncode != 0:
        raise EnvBuildError(item_dir, step, proc.returncode, out)
    return out


_PIP_INSTALL = re.compile(r"\bpip3?\s+install\b([^;&|]*)")


def installs_editable(repo: Path) -> bool:
    """Whether the module's Dockerfile installs its repository editable (``pip install -e .``), as the template does.

    ``pip install .`` (or ``".[extra]"``) in the Dockerfile means a regular
    install; no Dockerfile, or no install of ``.`` in it, means the
    template's way: editable.
    """
    dockerfile = Path(repo) / "Dockerfile"
    try:
        text = dockerfile.read_text(errors="replace").replace("\\\n", " ")
    except OSError:
        return True
    for match in _PIP_INSTALL.finditer(text):
        words = [w.strip("'\"") for w in match.group(1).split()]
        targets = [w for w in words if w == "." or w.startswith(".[") or w == "./"]
        if not targets:
            continue
        i = words.index(targets[0])
        return i > 0 and words[i - 1] in ("-e", "--editable")
    return True


def _repo_name(item_dir: Path) -> str:
    """The repository's folder name in the environment: the project's name, as a clone of it would be called."""
    import tomllib

    try:
        name = tomllib.loads((item_dir / "pyproject.toml").read_text(errors="replace"))["project"]["name"]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        name = item_dir.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.") or "module"


def find_links_flags(links: Sequence[str]) -> list[str]:
    """uv's ``--find-links`` for each folder of wheels the platform looks in (``env_find_links``)."""
    return [flag for link in links for flag in ("--find-links", link)]


def default_find_links() -> list[str]:
    """pip's ``PIP_FIND_LINKS``: the default of the ``env_find_links`` setting, for callers without settings.

    Read from the environment, not through the settings: this runs in sessions too (a Flower
    client builds its module's environment there), whose ``AI4LAB_*`` variables are not settings.
    """
    return os.environ.get("PIP_FIND_LINKS", "").split()


def _build(
    item_dir: Path,
    final: Path,
    digest: str,
    extras: Sequence[str],
    timeout: float,
    python: str,
    links: Sequence[str] = (),
) -> None:
    """Build the environment at ``final``, the AI4OS way (see the module docstring); the marker comes last.

    The build runs as :func:`builder_of` the item; the finished environment
    then belongs to the platform (users may run it, not change it).
    """
    builder = builder_of(item_dir)
    if builder is not None and (blocked := reachable_by_others(final.parent)) is not None:
        raise EnvBuildError(
            item_dir,
            "check the cache",
            1,
            f"the environment cache {final.parent} is not reachable "
            f"by user accounts ({blocked} is private): builds run as {builder.name}, and users "
            "run the environments; put envs_dir below runtime_dir",
        )
    uv = str(find_uv() if builder is None else readable_copy(find_uv().parent, "bin", None, ("uv",)) / "uv")
    deadline = time.monotonic() + timeout
    repo = final / "srv" / _repo_name(item_dir)
    tmp = final / ".build-tmp"
    editable = installs_editable(item_dir)
    try:
        final.mkdir()
        # links stay links: the build account must not read, through a copy, what a link points at
        shutil.copytree(item_dir, repo, ignore=_ignore_by_products, symlinks=True)
        tmp.mkdir()
        if builder is not None:
            give_tree(final, builder)

        def step(name: str, cmd: list[str]) -> str:
            return _run(
                cmd,
                item_dir=item_dir,
                step=name,
                cwd=repo,
                builder=builder,
                tmp=tmp,
                timeout=max(1.0, deadline - time.monotonic()),
            )

        # --no-config: a uv.toml or [tool.uv] in the module must not change how the platform builds
        step("uv venv", [uv, "venv", "--quiet", "--no-config", "--allow-existing", "--python", python, str(final)])
        env_python = str(env_bin(final, "python"))
        install = [uv, "pip", "install", *UV_INSTALL_FLAGS, *find_links_flags(links), "--python", env_python]
        if (repo / "requirements.txt").is_file():  # as the Dockerfile does: requirements first, then the package
            step(
                "pip install -r requirements.txt",
                [*install, "-r", "requirements.txt"],
            )
        target = f".[{','.join(extras)}]" if extras else "."
        step(
            f"pip install {'-e ' if editable else ''}{target}",
            [*install, *(["-e"] if editable else []), target],
        )
        listed = json.loads(
            step(
                "uv pip list", [uv, "pip", "list", "--quiet", "--no-config", "--format", "json", "--python", env_python]
            )
        )
        shutil.rmtree(tmp)
        if builder is not None:
            chown_tree(final, os.geteuid(), os.getegid())
        marker = {
            "item": item_dir.name,
            "source": str(item_dir),
            "hash": digest,
            "extras": list(extras),
            "repo": repo.relative_to(final).as_posix(),
            "editable": editable,
            "python": python_version(python).split()[0],
            "uv": _run([uv, "--version"], item_dir=item_dir, step="uv --version", cwd=final, timeout=30).strip(),
            "built_by": builder.name if builder is not None else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "packages": [f"{p['name']}=={p['version']}" for p in listed],
        }
        make_readable(final)  # user accounts run it; only the platform may change it
        (final / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        os.chmod(final / MARKER, 0o644)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise


def env_info(env_dir: Path) -> dict[str, object]:
    """What an environment was built from (its marker): item, repo, editable, packages ..."""
    return json.loads((Path(env_dir) / MARKER).read_text())


def env_repo(env_dir: Path) -> Path:
    """The environment's copy of the module's repository (read-only: jobs work in their own copy of it)."""
    return Path(env_dir) / str(env_info(env_dir)["repo"])


def _ignore_by_products(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _IGNORED_DIRS or n.endswith(_IGNORED_SUFFIXES)}


def ensure_env(
    item_dir: Path,
    cache_root: Path | None = None,
    *,
    extras: Sequence[str] = (),
    timeout: float = 1800.0,
    python: str | Path | None = None,
    find_links: Sequence[str] | None = None,
) -> Path:
    """Return a virtual environment with the package in ``item_dir`` installed, building it once.

    ``item_dir`` is a folder with a ``pyproject.toml`` (or ``setup.py``), such
    as ``config/catalog/modules/ai4lab-digits``. ``extras`` are installed too
    (e.g. ``("test",)``). ``cache_root`` defaults to :func:`default_cache_root`.
    The environment runs ``python`` (default :func:`ai4lab.core.runtime.default_user_python`: one that user
    accounts can execute). ``find_links``: folders of wheels to look in besides the index (the platform
    passes its ``env_find_links`` setting; default: pip's ``PIP_FIND_LINKS``), so that ``torch==2.13.0``
    takes the CPU build kept on disk.

    Raises :class:`EnvBuildError` (with uv's output) when the build fails; a
    failed build leaves nothing behind, so the next call tries again.
    """
    item_dir = Path(item_dir).resolve()
    if not item_dir.is_dir():
        raise FileNotFoundError(f"catalog item folder not found: {item_dir}")
    if not ((item_dir / "pyproject.toml").is_file() or (item_dir / "setup.py").is_file()):
        raise ValueError(f"{item_dir} is not a Python package (no pyproject.toml or setup.py)")
    extras = tuple(sorted(set(extras)))
    for extra in extras:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", extra):
            raise ValueError(f"invalid extra name: {extra!r}")
    root = Path(cache_root).expanduser() if cache_root is not None else default_cache_root()
    public_dir(root)
    interpreter = str(python or default_user_python())

    links = tuple(default_find_links() if find_links is None else find_links)
    digest = source_hash(item_dir, extras, interpreter, links)
    final = root / _env_name(item_dir, digest)
    if (final / MARKER).is_file():  # fast path: no lock needed to reuse a finished environment
        return final
    with _locked(root / f".{final.name}.lock"):
        if (final / MARKER).is_file():  # another process built it while we waited
            return final
        if final.exists():  # not ours to trust (e.g. copied in by hand without a marker)
            shutil.rmtree(final)
        _build(item_dir, final, digest, extras, timeout, interpreter, links)
    return final
