"""The vendored Nomad OpenAPI spec as strict JSON-schema validators.

The spec (``../shared/specs/nomad-openapi-v1.yaml``; override the folder with
``AI4LAB_SHARED_DIR``) declares no ``additionalProperties``, so by OpenAPI rules
unknown fields would pass. Nomad's Go decoder silently drops them, so a
misspelt field is a job that quietly lacks something: here every object schema
with ``properties`` is closed (``additionalProperties: false``). The few fields
newer than this generated spec (Nomad 1.1.x) that we send are added explicitly
in ``EXTENSIONS``.
"""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_NAME = "nomad-openapi-v1.yaml"
SPEC_URI = "urn:nomad-openapi-v1"

# Fields newer than the spec: (schema, property) -> property schema.
EXTENSIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("Job", "NodePool"): {"type": "string"},  # Nomad 1.6 node pools
    ("NodeListStub", "NodePool"): {"type": "string"},  # Nomad 1.6
}


def shared_dir() -> Path:
    env = os.environ.get("AI4LAB_SHARED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"


def spec_path() -> Path:
    return shared_dir() / "specs" / SPEC_NAME


def _close(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            _close(v)
    elif isinstance(node, list):
        for v in node:
            _close(v)


@lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    path = spec_path()
    if not path.is_file():
        raise FileNotFoundError(f"Nomad OpenAPI spec not found at {path} (set AI4LAB_SHARED_DIR)")
    return yaml.safe_load(path.read_text())


@lru_cache(maxsize=1)
def _strict_document() -> dict[str, Any]:
    doc = copy.deepcopy(load_spec())
    schemas = doc["components"]["schemas"]
    for (schema, prop), sub in EXTENSIONS.items():
        schemas[schema]["properties"].setdefault(prop, sub)
    _close(schemas)
    return doc


@lru_cache(maxsize=None)
def validator(schema: str) -> jsonschema.protocols.Validator:
    """A strict validator of ``components.schemas.<schema>``; ``schema`` may be ``[Name]`` for an array."""
    doc = _strict_document()
    registry = Registry().with_resource(SPEC_URI, Resource(contents=doc, specification=DRAFT4))
    ref = {"$ref": f"{SPEC_URI}#/components/schemas/{schema.strip('[]')}"}
    root = {"type": "array", "items": ref} if schema.startswith("[") else ref
    return jsonschema.Draft4Validator(root, registry=registry)


def errors(schema: str, instance: Any) -> list[str]:
    """Every violation, as ``path: message`` lines (empty when valid)."""
    out = []
    for e in sorted(validator(schema).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        out.append(f"{where}: {e.message}")
    return out


def validate(schema: str, instance: Any) -> None:
    errs = errors(schema, instance)
    if errs:
        raise jsonschema.ValidationError(f"{schema} does not match the Nomad spec:\n" + "\n".join(errs))


# Endpoints real Nomad has that the vendored 1.1 spec lacks (documented at developer.hashicorp.com/nomad/api-docs).
EXTRA_PATHS: dict[str, set[str]] = {
    "/client/fs/logs/{allocID}": {"get"},
    "/event/stream": {"get"},
}


@lru_cache(maxsize=1)
def _path_patterns() -> list[tuple[Any, set[str]]]:
    import re

    paths = {p: {m for m in ops if m in ("get", "put", "post", "delete")} for p, ops in load_spec()["paths"].items()}
    for p, methods in EXTRA_PATHS.items():
        paths.setdefault(p, set()).update(methods)
    out = []
    for p, methods in paths.items():
        pattern = "^/v1" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"
        out.append((re.compile(pattern), methods))
    return out


def route_error(method: str, path: str) -> str | None:
    """Why ``method path`` is not an endpoint of the spec (or of ``EXTRA_PATHS``); None when it is."""
    matches = [methods for pattern, methods in _path_patterns() if pattern.match(path)]
    if not matches:
        return f"{path} is not a path of the Nomad API spec"
    if not any(method.lower() in m for m in matches):
        return f"{method} is not allowed on {path} by the Nomad API spec"
    return None
