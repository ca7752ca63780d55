"""Session environments: PyTorch, TensorFlow or the operator's own, offered in the session form.

Why on top of the session environment: a session's JupyterLab, its kernel
machinery, MLflow and ai4lab's client already live in the session environment
(``scripts/install.sh``). An environment adds only its framework, the way an
IDE image ``FROM`` the base image would: a virtual environment whose
``site-packages`` come first, with a ``.pth`` file putting the session
environment's packages after them. Its packages are resolved with the session
environment's versions as constraints, so a package both have is the same
version in both and the kernel sees one consistent set. Building PyTorch then
takes seconds from uv's cache, instead of a second copy of JupyterLab.

Built like the module environments (``ai4lab.core.envs``): cached under
``envs_dir`` by a hash of what it is built from, under a lock, with a marker
written last; the wheels folders of ``env_find_links`` are searched, so that
``torch==2.13.0`` takes a CPU build kept on disk instead of PyPI's CUDA one.
The operator's requirements are trusted as the platform's own are (the
installer builds the session environment as the platform's user too).

The environment is the session's default kernel: its kernel spec is called
``python3`` (what notebooks ask for) and sits in ``share/jupyter`` of the
environment, which the session puts first on ``JUPYTER_PATH``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from ai4lab.core.envs import (
    MARKER,
    UV_INSTALL_FLAGS,
    EnvBuildError,
    _locked,
    _run,
    env_bin,
    find_links_flags,
    find_uv,
)
from ai4lab.core.runtime import make_readable, public_dir
from ai4lab.core.settings import SessionEnvironment, Settings

__all__ = ["SessionEnvBuild", "environment_path", "site_packages"]

#: Bumped when the layout of a session environment changes.
LAYOUT_VERSION = "1"
#: What every environment must import: the kernel, tracking and the platform's client.
BASE_CHECK = "import ipykernel, mlflow, ai4lab.client"
#: The ``.pth`` file that puts the session environment's packages after the environment's own.
BASE_PTH = "_ai4lab_session_env.pth"

Progress = Callable[[str], None]


def site_packages(env: Path) -> Path:
    """``lib/pythonX.Y/site-packages`` of a virtual environment (the one its Python reads)."""
    found = sorted(Path(env).glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no site-packages in {env}")
    return found[0]


def _frozen(uv: str, python: str) -> list[str]:
    """The session environment's packages from an index, as ``name==version`` (local builds left out)."""
    out = _run(
        [uv, "pip", "freeze", "--no-config", "--python", python],
        item_dir=Path(python),
        step="uv pip freeze",
        cwd=Path("/"),
        timeout=60,
    )
    return sorted(line for line in out.splitlines() if "==" in line and " @ " not in line and not line.startswith("-"))


def _packages(n: int) -> str:
    return f"{n} package" if n == 1 else f"{n} packages"


def _name(requirement: str) -> str:
    """The normalized project name of a requirement (``Torch[cpu]>=2`` -> ``torch``)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement


class SessionEnvBuild:
    """Building (once) and finding the environment ``key`` of the settings for sessions."""

    def __init__(self, settings: Settings, key: str, spec: SessionEnvironment) -> None:
        self.settings = settings
        self.key = key
        self.spec = spec
        session_env = Path(settings.session_env or "")
        self.base_python = str(session_env / "bin" / "python")
        self.base_site = self._base_site(session_env)
        self.root = Path(settings.envs_dir or settings.runtime_dir / "envs")

    @staticmethod
    def _base_site(session_env: Path) -> Path:
        """The session environment's site-packages, through its stable path (the installer relinks versions)."""
        try:
            return site_packages(session_env)
        except FileNotFoundError:  # the platform's own interpreter (no isolation, not a venv)
            return Path(sysconfig.get_paths()["purelib"])

    @property
    def needed(self) -> bool:
        """Whether the environment is more than the session environment itself (Base is not)."""
        return bool(self.spec.requirements)

    def _digest(self) -> str:
        """What the environment is built from: the spec, where wheels come from, and the session environment.

        The session environment by its ``*.dist-info`` folder names (name and version of every
        package, read without a subprocess: this is asked at every start), so that a new release of
        the session environment gets a new environment with its versions as constraints.
        """
        h = hashlib.sha256()
        for part in (
            f"ai4lab-session-env/{LAYOUT_VERSION}",
            self.key,
            self.spec.model_dump_json(exclude={"description", "image", "gpu_image"}),
            str(self.base_site),
            "links:",
            *self.settings.env_find_links,
            "base:",
            *sorted(p.name for p in self.base_site.glob("*.dist-info")),
        ):
            h.update(part.encode() + b"\0")
        return h.hexdigest()

    def folder(self) -> Path:
        """Where this environment is (or will be) built."""
        return self.root / f"session-{self.key}-{self._digest()[:16]}"

    def path(self) -> Path | None:
        """The built environment, or None when it is not built (or Base needs none)."""
        if not self.needed:
            return None
        final = self.folder()
        return final if (final / MARKER).is_file() else None

    def ensure(self, on_progress: Progress | None = None) -> Path | None:
        """The environment's folder, built first if needed (None for Base: the session environment itself).

        ``on_progress`` gets one line per step ("resolved 10 packages", "installed 10 packages: ...").
        Raises :class:`EnvBuildError` with the end of uv's output when the build fails; nothing is kept then.
        """
        if not self.needed:
            return None
        final = self.folder()
        if (final / MARKER).is_file():
            return final
        public_dir(self.root)
        say = on_progress or (lambda _msg: None)
        waiting = f"Waiting for the {self.spec.display_name} environment: another session is building it"
        with _locked(self.root / f".{final.name}.lock", on_wait=lambda: say(waiting)):
            if (final / MARKER).is_file():  # built by another session while this one waited
                say(f"{self.spec.display_name} environment ready (built by another session)")
                return final
            shutil.rmtree(final, ignore_errors=True)  # a build that died half-way
            uv = str(find_uv())
            constraints = [c for c in _frozen(uv, self.base_python) if _name(c) not in self._asked()]
            self._build(final, uv, constraints, say)
        return final

    def _asked(self) -> set[str]:
        return {_name(r) for r in self.spec.requirements}

    def _build(self, final: Path, uv: str, constraints: list[str], say: Progress) -> None:
        """uv venv, the ``.pth`` to the session environment, uv pip install, the checks, the kernel, the marker."""
        title = self.spec.display_name
        deadline = time.monotonic() + self.settings.env_build_timeout

        def step(name: str, cmd: list[str], on_line: Callable[[str], None] | None = None) -> str:
            return _run(
                cmd,
                item_dir=final,
                step=name,
                cwd=self.root,
                timeout=max(1.0, deadline - time.monotonic()),
                on_line=on_line,
            )

        try:
            say(f"Building the {title} environment (first use): {', '.join(self.spec.requirements)}")
            step("uv venv", [uv, "venv", "--quiet", "--no-config", "--python", self.base_python, str(final)])
            python = str(env_bin(final, "python"))
            # addsitedir, not a plain path line: the session environment's own .pth files count too
            # (an editable ai4lab where the platform's venv is the session environment)
            (site_packages(final) / BASE_PTH).write_text(f"import site; site.addsitedir({str(self.base_site)!r})\n")
            cons = final / "constraints.txt"
            cons.write_text("".join(f"{c}\n" for c in constraints))
            installed: list[str] = []

            def uv_line(line: str) -> None:
                text = line.strip()
                if text.startswith("+ "):
                    installed.append(text[2:])
                elif re.match(r"(Resolved|Prepared|Downloading|Downloaded|Bytecode compiled) ", text):
                    say(f"{title}: {text[0].lower()}{text[1:]}")

            sources = find_links_flags(self.settings.env_find_links)
            sources += [flag for url in self.spec.index_urls for flag in ("--extra-index-url", url)]
            install = [uv, "pip", "install", *UV_INSTALL_FLAGS, *sources, "--python", python]
            step("uv pip install", [*install, "--constraint", str(cons), *self.spec.requirements], uv_line)
            names = ", ".join(p.split("==")[0] for p in installed)
            say(f"{title}: installed {_packages(len(installed))}: {names}")
            check = BASE_CHECK + (f"\n{self.spec.check}" if self.spec.check else "")
            say(f"{title}: checking ({self.spec.check or 'the kernel, MLflow, ai4lab'})")
            step(f"check: {check}", [python, "-c", check])
            self._kernel_spec(final, python)
            make_readable(final)  # user accounts run it; only the platform may change it
            marker = {
                "environment": self.key,
                "display_name": title,
                "requirements": self.spec.requirements,
                "base": str(self.base_site),
                "installed": installed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (final / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            (final / MARKER).chmod(0o644)
            say(f"{title} environment ready: {_packages(len(installed))}")
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise

    def _kernel_spec(self, final: Path, python: str) -> None:
        """Kernel spec ``python3`` running this environment's Python: the default kernel of the session."""
        folder = final / "share" / "jupyter" / "kernels" / "python3"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": [python, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Python 3 ({self.spec.display_name})",
            "language": "python",
            "metadata": {"debugger": True, "ai4lab_environment": self.key},
        }
        (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
        for logo in self.base_site.glob("ipykernel/resources/logo-*.png"):
            shutil.copy(logo, folder / logo.name)


def environment_path(settings: Settings, key: str) -> Path | None:
    """The built environment ``key`` (None for Base or while it is not built)."""
    return SessionEnvBuild(settings, key, settings.session_environments[key]).path()


def environment_error(exc: EnvBuildError) -> str:
    """One message for the spawn page: the step that failed and the end of its output."""
    return f"the environment did not build ({exc.step}):\n{exc.output_tail}"
