"""JupyterHub configuration of an ai4lab platform, computed from the platform settings.

``config/jupyterhub_config.py`` calls ``configure(c)``; operators add their own
lines after it (e.g. an OIDC authenticator) like in any JupyterHub config.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ai4lab.core import accounts, db
from ai4lab.core.runtime import PACKAGE_TOOL_PREFIXES, PACKAGE_TOOL_VARS, shipped
from ai4lab.core.secrets_store import load_or_create
from ai4lab.core.settings import Settings, get_settings

USER_SCOPES = ["self", "access:services"]
SERVER_TOKEN_SCOPES = ["users:activity!user", "access:servers!user", "access:services", "read:users!user"]
API_SERVICE_SCOPES = [
    "list:users",
    "read:users",
    "admin:users",
    "admin:servers",
    "servers",
    "tokens",
    "access:servers",
    "access:services",
]


def _python(module: str) -> list[str]:
    return [sys.executable, "-m", module]


# Services build module environments (uv, pip): they need the machine's certificates and proxies.
PASSED_PREFIXES = ("AI4LAB_", *PACKAGE_TOOL_PREFIXES)
PASSED_VARS = {*PACKAGE_TOOL_VARS, "HOME", "LANG", "LC_ALL", "TZ"}


def service_env(settings: Settings) -> dict[str, str]:
    """Environment handed to hub-managed services: they must resolve the same settings."""
    import os

    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIXES) or k in PASSED_VARS}
    env["AI4LAB_STATE_DIR"] = str(settings.state)
    # code that reads no settings (environment builds) must agree with the platform's
    env["AI4LAB_RUNTIME_DIR"] = str(settings.runtime_dir)
    env["AI4LAB_USER_PYTHON"] = str(settings.user_python)
    env["AI4LAB_ENVS_DIR"] = str(settings.envs_dir)
    env["AI4LAB_ISOLATION"] = "auto" if settings.isolating else "off"
    # every environment build of the services looks in the same wheel folders (ensure_env's default)
    env["PIP_FIND_LINKS"] = " ".join(settings.env_find_links)
    return env


#: Folders of the state that user accounts traverse (never list) to reach their own sub-folder.
def _user_roots(s: Settings) -> tuple[Path, ...]:
    return (s.storage_root, s.workspaces_root, s.deployments_root)


def prepare_state(s: Settings) -> None:
    """Create the state folder and, when isolating, close it to user accounts.

    Why this shape: users must reach ``storage/<them>``, ``workspaces/<them>``
    and their deployments' work folders, and nothing else. The state folder
    and those three roots are 0711 (traversable, not listable); each user's
    folder below them is theirs, 0700; everything else (databases, secrets,
    logs, MLflow's store, the catalog cache, other users' folders) is the
    platform's alone.
    """
    from ai4lab.core.isolation import reachable_by_others

    for folder in (s.state, *_user_roots(s), s.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if not s.isolating:
        return
    blocked = reachable_by_others(s.state.parent)
    if blocked is not None:
        raise RuntimeError(
            f"user accounts cannot reach the state folder {s.state}: {blocked} is not traversable "
            "by others; set AI4LAB_STATE_DIR (state_dir) to a folder outside it"
        )
    os.chmod(s.state, 0o711)
    roots = _user_roots(s)
    for folder in roots:
        os.chmod(folder, 0o711)
    for entry in s.state.iterdir():
        if entry not in roots and not entry.is_symlink():
            os.chmod(entry, entry.stat().st_mode & ~0o077)


def configure(c: Any, settings: Settings | None = None) -> None:
    s = settings or get_settings()
    state = s.state
    prepare_state(s)
    db.upgrade(s.db_url)
    db.private_sqlite_file(s.hub_db_url)
    secrets, _ = load_or_create(state)
    # auth_state (an OIDC login's tokens) is encrypted with this key; one the operator set wins
    os.environ.setdefault("JUPYTERHUB_CRYPT_KEY", secrets["crypt_key"])

    c.JupyterHub.bind_url = f"http://{s.ip}:{s.port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{s.hub_port}"
    c.JupyterHub.db_url = s.hub_db_url
    c.JupyterHub.cookie_secret = bytes.fromhex(secrets["cookie_secret"])
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.log_level = s.log_level
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = max(q.sessions for q in s.quotas.values())
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.authenticator_class = s.authenticator
    c.JupyterHub.spawner_class = s.spawner

    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = secrets["proxy_auth_token"]
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    chp = s.tools_bin / "configurable-http-proxy"
    if chp.exists():
        c.ConfigurableHTTPProxy.command = [str(chp)]

    c.Authenticator.admin_users = {u.name for u in accounts.list_users(s.db_url) if u.is_admin}
    c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES
    c.Spawner.start_timeout = 180
    c.Spawner.poll_interval = 10  # a session killed for its memory shows as failed within seconds
    c.Spawner.http_timeout = 120
    c.Spawner.env_keep = ["LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV"]

    env = service_env(s)
    c.JupyterHub.services = [
        {
            "name": "ai4lab",
            "display": True,
            "url": f"http://127.0.0.1:{s.api_port}",
            "command": _python("ai4lab.api"),
            "api_token": secrets["api_service_token"],
            "environment": env,
            "oauth_no_confirm": True,
        },
        {
            "name": "mlflow",
            "display": True,
            "url": f"http://127.0.0.1:{s.mlflow_port}",
            "command": _python("ai4lab.api.mlflow_gateway"),
            "api_token": secrets["mlflow_service_token"],
            "environment": env,
            "oauth_no_confirm": True,
        },
    ]
    roles: list[dict[str, Any]] = [
        {"name": "user", "scopes": USER_SCOPES},
        {"name": "ai4lab-platform", "services": ["ai4lab"], "scopes": API_SERVICE_SCOPES},
    ]
    if s.idle_timeout > 0:
        c.JupyterHub.services.append(
            {
                "name": "idle-culler",
                "command": [
                    *_python("jupyterhub_idle_culler"),
                    f"--timeout={s.idle_timeout}",
                    "--cull-every=60",
                ],
            }
        )
        roles.append(
            {
                "name": "idle-culler",
                "services": ["idle-culler"],
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            }
        )
    c.JupyterHub.load_roles = roles
    c.JupyterHub.template_vars = {"ai4lab_api": "/services/ai4lab/docs"}
    # home.html adds a Marketplace button to the hub home page
    c.JupyterHub.template_paths = [str(shipped("templates"))]


def default_config_file() -> Path:
    """``config/jupyterhub_config.py``, shipped with the package."""
    return shipped("jupyterhub_config.py")
