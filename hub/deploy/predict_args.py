"""The predict arguments of a catalog module (name, file?, required, ...), read inside its own environment.

Shared by the marketplace (the *Try it* form), serverless deployments (which
argument takes the invocation's file) and pipelines (does the output of one
step fit the input of the next). Cached per environment: an environment is
immutable, so its arguments never change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ai4lab.catalog.model import CatalogItem
from ai4lab.core import isolation
from ai4lab.core.envs import ensure_env, env_bin, env_repo
from ai4lab.core.isolation import Accounts
from ai4lab.core.settings import get_settings
from ai4lab.deploy import runner, runner_result
from ai4lab.deploy.module_code import runner_env

_cache: dict[tuple[str, str], list[dict[str, Any]]] = {}


def describe_predict(item: CatalogItem, envs_dir: Path | None = None) -> list[dict[str, Any]]:
    """``[{name, file, required, description, default, type}]``; builds the environment if needed.

    Raises ``EnvBuildError`` or ``RuntimeError`` when the module cannot be loaded.
    """
    env = ensure_env(Path(item.run.package_path or ""), envs_dir)
    key = (str(env), item.run.entry_point or "")
    if key not in _cache:
        # the module's code belongs to whoever published it: it runs as nobody, not as the platform
        settings = get_settings()
        ident = Accounts.from_settings(settings).nobody()
        repo = env_repo(env)  # modules read their files relative to their repository
        proc = isolation.run(
            ident,
            [str(env_bin(env, "python")), str(runner(settings, "oneshot.py")), "--describe", key[1]],
            env=isolation.user_env(ident, "/", runner_env(env, key[1], repo)),
            cwd=repo,
        )
        described = runner_result(proc.stdout)
        if described is None:
            raise RuntimeError("the module's predict arguments could not be read")
        _cache[key] = described
    return _cache[key]
