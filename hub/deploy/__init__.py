"""Running catalog items: inference deployments of modules (DEEPaaS servers) and one-shot tries."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ai4lab.core.runtime import runner_scripts

if TYPE_CHECKING:
    from ai4lab.backends.local import LocalBackend
    from ai4lab.core.settings import Settings


def runner(settings: Settings, name: str) -> Path:
    """A runner script (``oneshot.py``, ``train_runner.py``, ``batch_runner.py``) where user accounts can read it."""
    return runner_scripts(settings.runtime_dir) / name


#: The line prefix before the JSON answer of a runner script (``oneshot.py``, ``train_runner.py``).
RESULT_MARK = "AI4LAB-RESULT "


def runner_result(stdout: str) -> Any:
    """The JSON answer a runner printed last, or None when it printed none (the module broke it first)."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARK)]
    return json.loads(lines[-1].removeprefix(RESULT_MARK)) if lines else None


def module_env(
    settings: Settings,
    backend: LocalBackend,
    owner: str,
    env_dir: Path,
    home: Path,
    *,
    repo: Path | None = None,
    app: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment of a process running a module's code for ``owner``, from its working copy ``repo``.

    The module's model cache (``AI4LAB_MODEL_DIR``, where bundled modules keep
    their pretrained model) is in the owner's home: a cache shared between
    users would let one user's code plant a model another user loads.
    """
    from ai4lab.deploy.module_code import code_variables

    models = backend.user_dir(
        owner, settings.user_workspace(owner) / ".cache" / "ai4lab" / "models", settings.workspaces_root
    )
    return {
        "PATH": os.pathsep.join([str(env_dir / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "AI4LAB_MODEL_DIR": str(models),
        **(code_variables(env_dir, repo, app) if repo is not None else {}),
        **extra,
    }
