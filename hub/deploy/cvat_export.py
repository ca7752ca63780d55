"""Export a CVAT task's annotations into the owner's storage as a dataset a training can use.

Uses cvat-sdk (the CVAT team's client): log in, ask the server to prepare the
export (``POST /api/tasks/{id}/dataset/export``), wait for the request, download
the archive; ai4lab unpacks it under ``datasets/<name>/`` of the owner's storage
with a small ``ai4lab-dataset.json`` saying where it came from. Annotations only
by default (the images are usually in the storage already).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from ai4lab.core.storage import resolve_in_storage
from ai4lab.nomad.jobs import dns_label

MANIFEST = "ai4lab-dataset.json"


class ExportError(RuntimeError):
    """The export could not be made; the message says why."""


def _safe_extract(archive: Path, target: Path) -> list[str]:
    """Unpack ``archive`` into ``target``, refusing members that would land outside it."""
    names = []
    with zipfile.ZipFile(archive) as z:
        for member in z.infolist():
            rel = PurePosixPath(member.filename)
            if rel.is_absolute() or ".." in rel.parts:
                raise ExportError(f"the export archive holds an unsafe path: {member.filename!r}")
            names.append(member.filename)
        z.extractall(target)
    return names


def export_task_annotations(
    host: str,
    credentials: tuple[str, str],
    task_id: int,
    storage_root: Path,
    *,
    format_name: str = "COCO 1.0",
    name: str | None = None,
    include_images: bool = False,
    status_check_period: float = 2,
) -> Path:
    """Export CVAT task ``task_id`` into ``<storage_root>/datasets/<name>``; returns that folder.

    An existing dataset folder of the same name is not overwritten (ExportError);
    a target that a symlink would take out of the storage is refused
    (StoragePathError), before the export is made and again before it is written.
    """
    from cvat_sdk import make_client
    from cvat_sdk.api_client.exceptions import ApiException

    try:
        with make_client(host, credentials=credentials) as client:
            task = client.tasks.retrieve(task_id)
            folder = name or f"cvat-{dns_label(task.name)}-{task_id}"
            # raises StoragePathError when datasets/ (or the folder) is a symlink leading out of the storage
            target = resolve_in_storage(storage_root, f"datasets/{folder}")
            if target.exists() or target.is_symlink():
                raise ExportError(f"datasets/{folder} already exists in the storage: choose another name")
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "export.zip"
                task.export_dataset(
                    format_name, archive, include_images=include_images, status_check_period=status_check_period
                )
                staging = Path(tmp) / "out"
                files = _safe_extract(archive, staging)
                manifest: dict[str, Any] = {
                    "source": "cvat",
                    "host": host,
                    "task_id": task_id,
                    "task_name": task.name,
                    "format": format_name,
                    "include_images": include_images,
                    "files": sorted(files),
                }
                (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
                target = resolve_in_storage(storage_root, f"datasets/{folder}")  # links may change meanwhile
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(staging, target)
    except ApiException as e:
        raise ExportError(f"CVAT answered HTTP {e.status}: {e.reason}") from None
    return target
