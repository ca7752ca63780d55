"""A Flower SuperNode that authenticates to an ai4lab Flower deployment with its token.

Run with the Python of a module's Flower environment (it imports flwr), by
``python -m ai4lab.flower.client``; not imported by the platform itself.

Why a wrapper: flwr 1.42's ``flower-supernode`` speaks protobuf over HTTP to
the Fleet API and has no option to add a header. The ai4lab server accepts a
Fleet request only with ``Authorization: Bearer <token>`` (see
``ai4lab_flower.auth``), so this program adds a ``ProtobufClientInterceptor``
to the Fleet client that the SuperNode creates, then runs flwr's own
``flower-supernode`` entry point unchanged. A refused token (401) makes the
SuperNode stop, as flwr does for a refused node; flwr then exits with code 0,
so this wrapper exits with :data:`REFUSED` and says why.

The token comes from ``AI4LAB_FLOWER_TOKEN`` (not the command line, so that it
does not show up in process listings); it is never printed.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: Exit code when the server refused the token.
REFUSED = 3


class BearerInterceptor:
    """flwr ``ProtobufClientInterceptor`` adding the deployment's token to each Fleet request."""

    refused = False

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}" if token else ""

    def intercept(self, context: Any, call_next: Any) -> Any:
        if self._header:
            context.request.headers["Authorization"] = self._header
        response = call_next(context)
        if response.status_code == 401:
            BearerInterceptor.refused = True
        return response


def install(token: str) -> None:
    """Make the SuperNode's Fleet client send ``token`` (a subclass of flwr's client, swapped in)."""
    from flwr.supernode import fleet_http_connection

    base = fleet_http_connection.FleetHttpClient

    class TokenFleetHttpClient(base):  # type: ignore[misc, valid-type]
        @classmethod
        def from_server_address(cls, *args: Any, interceptors: Any = (), **kwargs: Any) -> Any:
            return super().from_server_address(*args, interceptors=[*interceptors, BearerInterceptor(token)], **kwargs)

    fleet_http_connection.FleetHttpClient = TokenFleetHttpClient


def main() -> int:
    install(os.environ.pop("AI4LAB_FLOWER_TOKEN", ""))
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv[0] = "flower-supernode"
    code: Any = 0
    try:
        flower_supernode()
    except SystemExit as e:
        code = e.code
    if BearerInterceptor.refused:
        print(
            "error: the Flower server refused this client: its token is missing, wrong or was rotated "
            "(ask the deployment's owner for the current one)",
            file=sys.stderr,
            flush=True,
        )
        return REFUSED
    return code if isinstance(code, int) else (0 if code is None else 1)


if __name__ == "__main__":
    raise SystemExit(main())
