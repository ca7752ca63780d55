"""Reading and validating AI4OS metadata with the ``ai4-metadata`` package.

v2 YAML/JSON is validated against the newest schema the package ships; v1
``metadata.json`` (DEEP format) is converted with ``ai4-metadata``'s own
migration and must then pass the v2 schema, else it is refused with the reason.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from ai4_metadata import metadata as ai4_schema
from ai4_metadata import migrate as ai4_migrate
from ai4_metadata.exceptions import MetadataValidationError
from jsonschema.exceptions import best_match

from ai4lab.catalog.model import CatalogItem, Kind, Resources, RunInfo

METADATA_FILES = ("ai4-metadata.yml", "ai4-metadata.yaml", "ai4-metadata.json")
LEGACY_FILE = "metadata.json"


class MetadataError(ValueError):
    """Metadata that cannot become a catalog item; the message is the validator's reason."""


def _schema() -> Path:
    return ai4_schema.get_latest_schema_file()


def schema_version() -> str:
    return ai4_schema.get_latest_version().value


def _reason(e: MetadataValidationError) -> str:
    err = getattr(e, "e", None)
    if err is None or not hasattr(err, "message"):
        return str(e)
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    return f"{where}: {err.message}"


def parse_text(text: str, name: str = "ai4-metadata.yml") -> dict[str, Any]:
    try:
        data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MetadataError(f"not valid {'JSON' if name.endswith('.json') else 'YAML'}: {problem}{where}") from None
    if not isinstance(data, dict):
        raise MetadataError("metadata must be a mapping of fields")
    return data


def is_legacy(data: dict[str, Any]) -> bool:
    """v1 (DEEP) metadata has no metadata_version and keeps the description as a list of lines."""
    return "metadata_version" not in data and isinstance(data.get("description"), list)


def convert_legacy(data: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        converted = json.loads(json.dumps(ai4_migrate.migrate(Path(f.name))))
    except Exception as e:  # noqa: BLE001 - the migration trips over malformed v1 files in many ways
        raise MetadataError(f"v1 metadata could not be converted to v2: {type(e).__name__}: {e}") from None
    finally:
        Path(f.name).unlink(missing_ok=True)
    # the migration stamps "updated" with today's date; keep the item's own dates instead
    dates = converted.get("dates") or {}
    own = data.get("date_updated") or data.get("date_creation")
    if own:
        dates["updated"] = own
    else:
        dates.pop("updated", None)
    if not dates.get("created"):
        dates.pop("created", None)
    if dates:
        converted["dates"] = dates
    else:
        converted.pop("dates", None)
    return converted


@lru_cache(maxsize=1)
def _validator() -> Any:
    # ai4-metadata builds (and checks) the validator anew on every call: ~10 ms an item
    return ai4_schema.get_validator_for_schema(_schema())


def _check(data: dict[str, Any]) -> None:
    error = best_match(_validator().iter_errors(data))
    if error is not None:
        raise MetadataValidationError("no-file", error)


def validate(data: dict[str, Any]) -> dict[str, Any]:
    """The v2 metadata (converted from v1 when needed), or MetadataError with the reason."""
    if is_legacy(data):
        converted = convert_legacy(data)
        try:
            _check(converted)
        except MetadataValidationError as e:
            raise MetadataError(
                f"v1 metadata could not be converted to v2: {_reason(e)}; "
                "run 'ai4-metadata migrate' and complete the missing fields"
            ) from None
        return converted
    try:
        _check(data)
    except MetadataValidationError as e:
        raise MetadataError(_reason(e)) from None
    return data


def find_metadata_file(folder: Path) -> Path | None:
    for name in (*METADATA_FILES, LEGACY_FILE):
        if (folder / name).is_file():
            return folder / name
    return None


def _deepaas_entry_point(package: Path) -> str | None:
    pyproject = package / "pyproject.toml"
    if not pyproject.is_file():
        return None
    import tomllib

    try:
        data = tomllib.loads(pyproject.read_text(errors="replace"))
    except tomllib.TOMLDecodeError as e:
        raise MetadataError(f"pyproject.toml of {package.name} is not valid TOML: {e}") from None
    eps = data.get("project", {}).get("entry-points", {}).get("deepaas.v2.model", {})
    return next(iter(eps), None)


def _split_image(image: str | None) -> tuple[str | None, str]:
    if not image:
        return None, "latest"
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"


def to_item(
    data: dict[str, Any],
    *,
    item_id: str,
    kind: Kind,
    source: str,
    package_path: Path | None = None,
) -> CatalogItem:
    """A catalog item from validated v2 metadata."""
    links = {k: str(v) for k, v in (data.get("links") or {}).items() if v}
    image, tag = _split_image(links.get("docker_image"))
    resources = data.get("resources") or {}
    dates = data.get("dates") or {}
    entry_point = _deepaas_entry_point(package_path) if package_path else None
    return CatalogItem(
        id=item_id,
        kind=kind,
        title=str(data.get("title", item_id)),
        summary=str(data.get("summary", "")),
        description=str(data.get("description", "")),
        tasks=list(data.get("tasks") or []),
        categories=list(data.get("categories") or []),
        tags=[str(t) for t in data.get("tags") or []],
        libraries=list(data.get("libraries") or []),
        data_types=list(data.get("data-type") or []),
        links=links,
        license=data.get("license") or links.get("license"),
        created=str(dates["created"]) if dates.get("created") else None,
        updated=str(dates["updated"]) if dates.get("updated") else None,
        metadata_version=str(data.get("metadata_version", "")) or None,
        resources_inference=Resources.from_metadata(resources.get("inference")),
        resources_training=Resources.from_metadata(resources.get("training")),
        run=RunInfo(
            package_path=str(package_path) if entry_point else None,
            entry_point=entry_point,
            docker_image=image,
            docker_tag=tag,
        ),
        source=source,
        metadata=data,
    )


def load_folder(folder: Path, *, kind: Kind, source: str, item_id: str | None = None) -> CatalogItem:
    """The item of a module/tool folder (its metadata file, and its package if it has one)."""
    path = find_metadata_file(folder)
    if path is None:
        raise MetadataError(f"no {' or '.join(METADATA_FILES)} in {folder.name}")
    data = validate(parse_text(path.read_text(errors="replace"), path.name))
    return to_item(data, item_id=item_id or folder.name, kind=kind, source=source, package_path=folder)
