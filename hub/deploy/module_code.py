"""Where a module's code runs: a private working copy of its repository, as in an AI4OS container.

Why: an AI4OS image clones the module's repository into ``/srv`` and runs
``deepaas-run`` from it, so modules read ``ai4-metadata.yml`` and their
``data/`` and ``models/`` folders relative to the repository (the working
folder, or the package's parent folder), and write there too: every
container has its own writable copy. On one machine the environment's copy
of the repository (``ai4lab.core.envs.env_repo``) is shared and read-only, so each
job (a DEEPaaS server, a training, a *Try*) gets its own copy, owned by the
job's user, and runs in it. With an editable install (the template's way)
``PYTHONPATH`` points at the copy, so that the package's ``__file__`` is in
it too.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ai4lab.core import isolation
from ai4lab.core.envs import env_info, env_repo
from ai4lab.core.isolation import Identity


def working_copy(env: Path, workdir: Path, ident: Identity) -> Path:
    """``workdir/<repository>``: a copy of the environment's repository belonging to ``ident``, private to it.

    An existing copy is kept (a deployment restarted after a platform
    restart finds what its module wrote in ``models/``).
    """
    repo = env_repo(env)
    copy = Path(workdir) / repo.name
    if not copy.is_dir():
        tmp = Path(workdir) / f".{repo.name}.copy"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(repo, tmp, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, _files in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o700)
        os.chmod(tmp, 0o700)
        isolation.give_tree(tmp, ident)
        os.rename(tmp, copy)
    return copy


def path_variables(app: str | None, repo: Path) -> dict[str, str]:
    """``<APP>_DATA_PATH`` and ``<APP>_MODELS_PATH``, the variables modules from the AI4OS template read."""
    if not app:
        return {}
    prefix = re.sub(r"[^A-Za-z0-9_]", "_", app).upper()
    return {f"{prefix}_DATA_PATH": str(repo / "data"), f"{prefix}_MODELS_PATH": str(repo / "models")}


def runner_env(env: Path, app: str | None, repo: Path) -> dict[str, str]:
    """Variables of a short runner (describing or checking arguments, a report) in the environment's own repository."""
    return {"PATH": f"{env}/bin:/usr/bin:/bin", **path_variables(app, repo)}


def code_variables(env: Path, repo: Path, app: str | None) -> dict[str, str]:
    """What a process running the module's code from ``repo`` needs besides the platform's variables."""
    out = path_variables(app, repo)
    if env_info(env).get("editable"):
        out["PYTHONPATH"] = str(repo)  # before the editable finder: the package is imported from this copy
    return out


def link_folder(repo: Path, name: str, target: Path, ident: Identity, merge: bool = True) -> None:
    """Make ``repo/name`` (``models`` or ``data``) lead to ``target`` in the user's storage.

    A link to the folder itself, not one per file: module code walks these
    folders with ``os.walk`` or ``Path.rglob``, which do not descend into
    linked subfolders. With ``merge``, what the repository ships in that
    folder (a ``.gitignore``, a pretrained model) is copied into ``target``
    first, without overwriting the user's files; without, the user's folder
    takes its place (a dataset is not written to).
    """
    folder = repo / name
    if folder.is_symlink():
        folder.unlink()
    elif folder.is_dir():
        for item in folder.iterdir() if merge else ():
            dest = target / item.name
            if not dest.exists() and not item.is_symlink():
                if item.is_dir():
                    shutil.copytree(item, dest, symlinks=True)
                else:
                    shutil.copy2(item, dest)
                isolation.give_tree(dest, ident)
        shutil.rmtree(folder)
    folder.symlink_to(target, target_is_directory=True)
    isolation.give(folder, ident)
