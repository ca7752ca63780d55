"""The DEEPaaS request contract: how the platform passes a prediction on to a module (AI4OS's common API).

DEEPaaS reads predict arguments from a form (``multipart/form-data``): a list
is the field repeated, a dict a JSON string; the answer's type comes from the
``accept`` argument, read from the ``Accept`` header or the query as the module
declares it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx


def answer_type(accept: str) -> str:
    """The content type asked for a module's answer (its DEEPaaS ``accept`` argument), '' for JSON or any.

    Only one plain media type counts: a browser's ``text/html,...;q=0.9`` is no choice the module offers.
    """
    accept = accept.strip()
    if not accept or "," in accept or ";" in accept or accept in ("*/*", "application/json"):
        return ""
    return accept


def form_body(fields: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """JSON predict arguments as the form DEEPaaS parses: a list is the field repeated, anything else text.

    ``{"x": 3, "flag": true, "labels": ["a", "b"], "opts": {"k": 1}}`` gives ``x=3``,
    ``flag=true``, ``labels=a``, ``labels=b`` and ``opts={"k": 1}`` (DEEPaaS modules
    take dicts as JSON strings).
    """

    def text(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v)

    parts = [(k, (None, text(item))) for k, v in fields.items() for item in (v if isinstance(v, list) else [v])]
    built = httpx.Request("POST", "http://x", files=parts)
    return built.read(), {"content-type": built.headers["content-type"]}
