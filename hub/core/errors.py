"""The one error the platform raises for a request it cannot honour.

Why one type: the API answers every ``PlatformError`` the same way (its status
and its sentence, ``{"detail": ..., "status": ...}``) from one handler, so the
code that finds a problem raises it where it is found and no layer in between
catches and re-raises it under another name. The CLI prints the sentence and
exits non-zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class PlatformError(Exception):
    """``status`` is the HTTP status to answer with (4xx: the caller's to fix; 5xx: ours or a backend's).

    ``errors``: for a 422, the fields at fault in FastAPI's shape (``loc``, ``msg``, ``type``), which the
    API answers as ``detail`` like any request validation error.
    """

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    @classmethod
    def unknown_fields(
        cls, loc: Sequence[str | int], names: Iterable[str], allowed: Iterable[str], where: str
    ) -> PlatformError:
        """422 for fields a free-form part of a request (a tool's ``config``) does not take."""
        use = ", ".join(allowed)
        msgs = [(name, f"unknown field {name!r} for {where}: use {use}") for name in sorted(names)]
        errors: list[dict[str, Any]] = [{"type": "extra_forbidden", "loc": [*loc, n], "msg": m} for n, m in msgs]
        return cls(422, msgs[0][1], errors)

    @classmethod
    def not_found(cls, what: str) -> PlatformError:
        """404 with the same words whether the thing is missing or someone else's (its existence is not revealed)."""
        return cls(404, f"no such {what}")
