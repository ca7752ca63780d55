"""Helpers of the catalog tests: the shared data as the oracle, a local HTTP file server."""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ai4lab.catalog import Catalog
from ai4lab.catalog.model import ItemError
from ai4lab.core.settings import SourceConfig
from tests import ai4os_data

DATA = ai4os_data.DATA
MODULES_SOURCE = "ai4os-modules"
TOOLS_SOURCE = "ai4os-tools"


@dataclass
class CatalogEnv:
    catalog: Catalog
    sources: list[SourceConfig]
    cache: Path
    db_url: str
    refresh_errors: list[ItemError] = field(default_factory=list)


def raw(file: str) -> dict[str, Any]:
    """A shared-data file as parsed by plain PyYAML/json (not by the code under test)."""
    text = (DATA / file).read_text()
    return json.loads(text) if file.endswith(".json") else yaml.safe_load(text)


def manifest_entry(file: str) -> dict[str, Any]:
    return next(e for e in ai4os_data.manifest() if e["file"] == file)


def source_of(kind: str) -> str:
    return MODULES_SOURCE if kind == "module" else TOOLS_SOURCE


def expected_reason_parts(reason: str) -> list[str]:
    """The pieces of the validator's reason that the catalog's reason must contain.

    'YAML parse error: <problem> in "<unicode string>", line L, column C: ...' gives
    the problem and 'line L, column C'; 'schema error: <msg>' gives the message.
    """
    m = re.match(r'YAML parse error: (.+?) in ".*?", line (\d+), column (\d+)', reason)
    if m:
        return [m.group(1), f"line {m.group(2)}, column {m.group(3)}"]
    m = re.match(r"schema error: (.+)", reason)
    if m:
        return [m.group(1)]
    return [reason]


def all_ids(catalog: Catalog, kind: str, **kw: Any) -> list[str]:
    return [it["id"] for it in catalog.search(kind, per_page=1000, **kw)["items"]]  # type: ignore[arg-type]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
