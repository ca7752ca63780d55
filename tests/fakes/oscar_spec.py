"""The vendored OSCAR OpenAPI spec (``../shared/specs/oscar-api-v2.yaml``) as request and schema checks.

Like ``nomad_spec``: object schemas are closed (``additionalProperties:
false``), because OSCAR's Go decoder silently drops unknown fields and a
misspelt field would be a service that quietly lacks something.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.fakes.nomad_spec import _close, shared_dir

SPEC_URI = "urn:oscar-api-v2"


@lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    path = shared_dir() / "specs" / "oscar-api-v2.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"OSCAR OpenAPI spec not found at {path} (set AI4LAB_SHARED_DIR)")
    # the vendored file has unquoted descriptions containing ": " that strict YAML parsers refuse
    text = re.sub(r"(?m)^(\s*description: )([^'\"\n].*: .*)$", lambda m: m.group(1) + json.dumps(m.group(2)),
                  path.read_text())
    doc = copy.deepcopy(yaml.safe_load(text))
    _close(doc["components"]["schemas"])
    return doc


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    registry = Registry().with_resource(SPEC_URI, Resource(contents=load_spec(), specification=DRAFT4))

    def absolute(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (f"{SPEC_URI}{v}" if k == "$ref" else absolute(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [absolute(v) for v in node]
        return node

    return jsonschema.Draft4Validator(absolute(schema), registry=registry)


def errors(schema: dict[str, Any] | str, instance: Any) -> list[str]:
    """Violations of a schema (or of ``components.schemas.<name>``), as ``path: message`` lines."""
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    out = []
    for e in sorted(_validator(schema).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        out.append(f"{where}: {e.message}")
    return out


@lru_cache(maxsize=1)
def _routes() -> list[tuple[re.Pattern[str], str, dict[str, Any]]]:
    out = []
    for template, item in load_spec()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        out.append((pattern, template, item))
    return out


def operation(method: str, path: str) -> tuple[str, dict[str, Any]] | tuple[None, str]:
    """The spec's operation for a request: ``(template, operation)``, or ``(None, reason)``."""
    for pattern, template, item in _routes():
        if pattern.match(path):
            op = item.get(method.lower())
            if op is None:
                return None, f"{method} is not an operation of {template} in the OSCAR API"
            return template, op
    return None, f"{path} is not a path of the OSCAR API"


def check_request(method: str, path: str, content_type: str, body: bytes) -> str | None:
    """Why a request does not follow the spec (path, method, body against its schema), or None."""
    template, op = operation(method, path)
    if template is None:
        return str(op)
    assert isinstance(op, dict)
    spec_body = op.get("requestBody")
    if spec_body is None:
        return f"{method} {template} takes no body" if body else None
    ctype = content_type.split(";")[0].strip() or "application/octet-stream"
    media = spec_body.get("content", {})
    if ctype not in media:
        return f"{method} {template} accepts {', '.join(media)}, not {ctype!r}"
    if spec_body.get("required") and not body:
        return f"{method} {template} needs a body"
    if ctype != "application/json":
        return None
    try:
        instance = json.loads(body)
    except ValueError as e:
        return f"{method} {template}: the body is not JSON: {e}"
    errs = errors(media[ctype]["schema"], instance)
    return f"{method} {template}: body does not match the spec:\n" + "\n".join(errs) if errs else None


def security(method: str, path: str) -> list[str]:
    """Names of the security schemes the operation accepts ('basicAuth', 'token'); [] when open."""
    template, op = operation(method, path)
    if template is None or not isinstance(op, dict):
        return []
    return [name for req in op.get("security", []) for name in req]
