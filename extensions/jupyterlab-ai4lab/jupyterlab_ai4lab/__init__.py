"""ai4lab in JupyterLab: the panels (a prebuilt lab extension) and a server extension.

The server extension forwards the panels' calls to the platform API with the
session's own token (``AI4LAB_API_TOKEN``, set by the ai4lab spawner), so the
browser never holds a platform token and each user sees only their things.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyterlab-ai4lab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyterlab_ai4lab"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from jupyterlab_ai4lab.handlers import setup_handlers

    setup_handlers(server_app)
    server_app.log.info("jupyterlab_ai4lab: platform API at %s", server_app.web_app.settings["ai4lab"].api_url or "(unset)")
