"""Datasets by DOI or URL (kind ``dataset``): files downloaded into ``datasets/<name>/`` of the owner's storage.

A Zenodo DOI (``10.5281/zenodo.123``), a Zenodo record URL
(``https://zenodo.org/records/123``) or a plain HTTPS URL. The platform reads
the record from Zenodo's REST API (``<zenodo_url>/api/records/<n>``: title,
creators, license, files with their md5) when the import is asked for, so a
bad DOI, a missing record or a name clash is refused at once; the download
itself is a job of the local backend, run as the owner's system account
(``dataset_runner.py``, the standard library only, in the user Python): it
streams each file into a hidden folder beside the target, checks its size
and checksum, writes the card (``DATASET.md``, ``dataset.json``) and renames
the folder to ``datasets/<name>`` last. A failed or cancelled import leaves
nothing in ``datasets/<name>``: its folder is removed by the runner, and by
the platform after a stop or a crash.

As with trainings, the runner writes ``result.json`` last; that file, not
the exit code, says how an import ended after a platform restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ai4lab.backends.base import JobSpec
from ai4lab.core import deployments as deps
from ai4lab.core.db import ACTIVE_STATUSES, Deployment
from ai4lab.core.errors import PlatformError
from ai4lab.core.statuses import RUNNING_STATUSES
from ai4lab.core.storage import QuotaExceeded, in_user_storage, open_storage, storage_quota
from ai4lab.deploy import runner
from ai4lab.deploy.lifecycle import Caller, DeploymentRequest, Lifecycle, Platform
from ai4lab.deploy.trainings import job_result

log = logging.getLogger("ai4lab.datasets")

#: The folder of a user's storage that holds their datasets.
DATASETS = "datasets"
#: Files of a dataset folder that describe it (written by the import).
CARD_FILES = ("DATASET.md", "dataset.json")
ZENODO_DOI = re.compile(r"^10\.5281/zenodo\.(\d{1,12})$", re.IGNORECASE)
RECORD_PATH = re.compile(r"^/(?:api/)?records?/(\d{1,12})/?$")
#: Data files named in a listing (for pickers that offer one file of a dataset, e.g. a CSV).
DATA_FILES = 50
#: Largest ``dataset.json`` read back for a listing.
CARD_BYTES = 2**20
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DOI_PREFIXES = ("doi:", "https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/")


class DatasetSource(BaseModel):
    """What to import: the fields of ``POST /datasets`` (and of a ``dataset`` deployment)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1,
        max_length=2000,
        description="a Zenodo DOI (10.5281/zenodo.123), a Zenodo record URL (https://zenodo.org/records/123) "
        "or an HTTPS URL of one file",
    )
    name: str | None = Field(
        default=None, description="folder under datasets/ (default: from the record's title, or the file's name)"
    )
    replace: bool = Field(default=False, description="replace datasets/<name> when it exists")
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{64}$", description="plain URLs: the file's SHA-256, verified"
    )
    md5: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{32}$", description="plain URLs: the file's MD5, verified"
    )


class DatasetRequest(DatasetSource, DeploymentRequest):
    kind: Literal["dataset"]


@dataclass
class Resolved:
    """A source as the runner downloads it: its files (url, size, checksums) and the card's facts."""

    files: list[dict[str, Any]]
    card: dict[str, Any]
    default_name: str
    record: int | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-")


def _file_name(key: str, where: str) -> str:
    """A file's name as it lands in the dataset folder: one plain name, not one of the card's."""
    if not key or "/" in key or "\\" in key or key.startswith(".") or "\x00" in key:
        raise PlatformError(400, f"{where}: the file name {key!r} cannot be a file of a dataset folder")
    if key in CARD_FILES:
        raise PlatformError(400, f"{where}: a file named {key} would be overwritten by the dataset's card")
    return key


def parse_source(source: str, zenodo_url: str) -> tuple[str, int | str]:
    """``("zenodo", record id)`` or ``("url", url)`` for what a user gave; 400 saying what is accepted.

    A record URL of zenodo.org, or of the configured Zenodo, is a record of the
    configured Zenodo (the REST API there is asked for it).
    """
    text = source.strip()
    lowered = text.lower()
    for prefix in DOI_PREFIXES:
        if lowered.startswith(prefix):
            text = text[len(prefix) :]
            break
    accepted = "give a Zenodo DOI (10.5281/zenodo.<n>), a Zenodo record URL or an HTTPS URL of a file"
    if m := ZENODO_DOI.match(text):
        return "zenodo", int(m.group(1))
    if text.startswith("10."):
        raise PlatformError(400, f"source: only Zenodo DOIs can be resolved, not {text!r}: {accepted}")
    url = urllib.parse.urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise PlatformError(400, f"source: {source!r} is neither a DOI nor a URL: {accepted}")
    zenodo = urllib.parse.urlsplit(zenodo_url.rstrip("/"))
    if (url.hostname in ("zenodo.org", "www.zenodo.org") or url.netloc == zenodo.netloc) and (
        m := RECORD_PATH.match(url.path.removeprefix(zenodo.path if url.netloc == zenodo.netloc else ""))
    ):
        return "zenodo", int(m.group(1))
    under_zenodo = text.startswith(zenodo_url.rstrip("/") + "/")
    if url.scheme != "https" and not under_zenodo:
        raise PlatformError(400, f"source: {source!r} is not HTTPS: only HTTPS downloads are verified in transit")
    return "url", text


def resolve_zenodo(record_id: int, zenodo_url: str, timeout: float = 30) -> Resolved:
    """Zenodo record ``record_id`` from its REST API: its files with their md5, and the card's facts."""
    base = zenodo_url.rstrip("/")
    try:
        r = httpx.get(f"{base}/api/records/{record_id}", headers={"Accept": "application/json"}, timeout=timeout)
    except httpx.HTTPError as e:
        raise PlatformError(502, f"cannot reach Zenodo at {base}: {e}") from None
    if r.status_code in (404, 410):
        raise PlatformError(404, f"no Zenodo record {record_id} at {base} (answer {r.status_code})")
    if 400 <= r.status_code < 500:
        raise PlatformError(400, f"Zenodo at {base} refused record {record_id} (answer {r.status_code})")
    if r.status_code != 200:
        raise PlatformError(502, f"Zenodo at {base} answered {r.status_code} for record {record_id}")
    try:
        record = r.json()
        meta = record.get("metadata") or {}
        entries = record.get("files") or []
    except (ValueError, AttributeError):
        raise PlatformError(502, f"Zenodo at {base} answered record {record_id} with no record") from None
    where = f"Zenodo record {record_id}"
    if not entries:
        access = meta.get("access_right") or (record.get("access") or {}).get("files") or "unknown"
        raise PlatformError(400, f"{where} has no files open for download (access: {access})")
    files = []
    for entry in entries:
        algo, _, value = str(entry.get("checksum") or "").partition(":")
        link = (entry.get("links") or {}).get("self") or (entry.get("links") or {}).get("content")
        if not link:
            raise PlatformError(502, f"{where}: file {entry.get('key')!r} has no download link")
        files.append(
            {
                "key": _file_name(str(entry.get("key") or entry.get("filename") or ""), where),
                "url": link,
                "size": entry.get("size"),
                "checksums": {algo.lower(): value.lower()} if algo.lower() in ("md5", "sha256") and value else {},
            }
        )
    if len({f["key"] for f in files}) != len(files):
        raise PlatformError(400, f"{where} has two files of the same name")
    license_ = meta.get("license")
    title = str(meta.get("title") or f"Zenodo record {record_id}")
    card = {
        "source": f"zenodo:{record_id}",
        "doi": record.get("doi") or meta.get("doi") or f"10.5281/zenodo.{record_id}",
        "record_url": (record.get("links") or {}).get("html") or f"{base}/records/{record_id}",
        "title": title,
        "creators": [str(c.get("name")) for c in meta.get("creators") or [] if isinstance(c, dict) and c.get("name")],
        "license": (license_.get("id") if isinstance(license_, dict) else license_) or None,
        "version": meta.get("version"),
        "publication_date": meta.get("publication_date"),
    }
    return Resolved(files, card, _slug(title) or f"zenodo-{record_id}", record=record_id)


def resolve_url(url: str, sha256: str | None, md5: str | None) -> Resolved:
    """One file at a plain URL: checked against the sums the request gives, if any."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) or "download"
    key = _file_name(name, "url")
    sums = {k: v.lower() for k, v in (("sha256", sha256), ("md5", md5)) if v}
    card: dict[str, Any] = {"source": url, "title": key, "creators": [], "license": None, "version": None}
    return Resolved([{"key": key, "url": url, "size": None, "checksums": sums}], card, _slug(key.rsplit(".", 1)[0]))


class DatasetImports(Lifecycle):
    """Dataset imports on this machine: one download job per import, as its owner."""

    kinds: ClassVar[tuple[str, ...]] = ("dataset",)
    backend: ClassVar[str] = "local"
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = (DatasetRequest,)

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.local = platform.local

    # -- where ------------------------------------------------------------------------------
    def storage_path(self, owner: str, rel: str) -> Path:
        return in_user_storage(self.settings.user_storage(owner), rel, "dataset")

    def tmp_path(self, dep: Deployment) -> Path:
        """The hidden folder an import downloads into (beside its target, so that the rename is atomic).

        Its own name is not resolved: if the user replaced it by a link, the link is what gets removed.
        """
        return self.storage_path(dep.owner, DATASETS) / f".import-{dep.id}"

    # -- create -----------------------------------------------------------------------------
    async def create(self, request: DatasetSource, caller: Caller) -> Deployment:
        """Resolve the source, check the name, record the import and start its download."""
        if request.name is not None and not NAME.match(request.name):
            raise PlatformError(
                400, f"name {request.name!r}: give one folder name of letters, digits, '.', '_' or '-' (no '/')"
            )
        kind, ref = parse_source(request.source, self.settings.zenodo_url)
        if kind == "zenodo":
            if request.sha256 or request.md5:
                raise PlatformError(400, "sha256/md5: a Zenodo record brings its own checksums; give them for URLs")
            resolved = await asyncio.to_thread(resolve_zenodo, int(ref), self.settings.zenodo_url)
        else:
            resolved = resolve_url(str(ref), request.sha256, request.md5)
        name = request.name or resolved.default_name or "dataset"
        rel = f"{DATASETS}/{name}"
        await self.platform.storage(caller.name)  # an S3 or WebDAV storage is mounted where the job writes
        async with self.platform.lock(f"datasets-{caller.name}"):
            running = [d for d in self.mine(active_only=True) if d.owner == caller.name]
            if any(d.name == name for d in running):
                raise PlatformError(409, f"dataset {name!r} is being imported already: wait for it or cancel it")
            if len(running) >= self.settings.dataset_imports:
                raise PlatformError(
                    429,
                    f"{len(running)} dataset imports of yours are running, at most "
                    f"{self.settings.dataset_imports} at once: wait for one to end, or cancel one",
                )
            target = self.storage_path(caller.name, rel)
            if target.exists() and not request.replace:
                raise PlatformError(409, f"dataset {name!r} exists in {rel}: pass replace=true, or choose another name")
            await asyncio.to_thread(self._check_space, resolved, caller)
            card: dict[str, Any] = {**resolved.card, "name": name, "path": rel, "imported_by": caller.name}
            spec = {
                "source": request.source,
                "title": resolved.card["title"],
                "dataset": rel,
                "replace": request.replace,
                "record": resolved.record,
                "files": resolved.files,
                "card": card,
            }
            dep = deps.create(
                self.settings.db_url,
                owner=caller.name,
                kind="dataset",
                name=name,
                spec=spec,
                backend=self.backend,
                status="starting",
                vo=caller.vo,
            )
        await self.start(dep)
        return deps.get(self.settings.db_url, dep.id) or dep

    def _check_space(self, resolved: Resolved, caller: Caller) -> None:
        """507 when the record's files go over the caller's storage quota, or cannot fit on the storage's disk
        (their sizes are known for Zenodo)."""
        need = sum(f.get("size") or 0 for f in resolved.files)
        allowed = storage_quota(self.settings, caller.name, caller.role)
        if allowed is not None and (used := open_storage(self.settings, caller.name).usage()) + need > allowed:
            raise QuotaExceeded(used, need, allowed)
        root = self.settings.storage_root
        free = shutil.disk_usage(root if root.exists() else self.settings.state).free
        if need > free:
            raise PlatformError(
                507,
                f"the dataset needs {need / 1e9:.2f} GB, the storage has {free / 1e9:.2f} GB free: nothing was fetched",
            )

    async def start(self, dep: Deployment) -> None:
        try:
            job, paths = await asyncio.to_thread(self._prepare, dep)
            state = await self.local.submit(job)
            deps.set_status(
                self.settings.db_url,
                dep.id,
                "running",
                "",
                backend_state={**state, **paths},
                endpoints={"dataset": dep.spec["dataset"]},
            )
        except Exception as e:
            log.exception("dataset import %s failed to start", dep.id)
            await asyncio.to_thread(self._clean, dep)
            deps.set_status(self.settings.db_url, dep.id, "failed", f"could not start: {e}")

    def _prepare(self, dep: Deployment) -> tuple[JobSpec, dict[str, str]]:
        """The job that downloads, with its request file in its work folder; folders made as the owner's."""
        owner, settings = dep.owner, self.settings
        self.local.user_dir(owner, settings.user_storage(owner), settings.storage_root)
        self.local.user_dir(owner, self.storage_path(owner, DATASETS), settings.storage_root)
        workdir = self.local.user_dir(owner, settings.deployments_root / dep.id, settings.deployments_root)
        tmp, result = self.tmp_path(dep), workdir / "result.json"
        request = {
            "files": dep.spec["files"],
            "tmp": str(tmp),
            "target": str(self.storage_path(owner, dep.spec["dataset"])),
            "replace": dep.spec["replace"],
            "card": dep.spec["card"],
            "result": str(result),
            "timeout": settings.dataset_timeout,
        }
        (workdir / "request.json").write_text(json.dumps(request))
        job = JobSpec(
            name=f"dataset-{dep.id}",
            command=[
                str(settings.user_python),
                str(runner(settings, "dataset_runner.py")),
                str(workdir / "request.json"),
            ],
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "PYTHONUNBUFFERED": "1"},
            cwd=workdir,
            log_path=settings.logs_dir / "deployments" / f"{dep.id}.log",
            owner=owner,
            owned_paths=[workdir],
        )
        return job, {"result": str(result), "tmp": str(tmp)}

    # -- follow -----------------------------------------------------------------------------
    async def progress(self, dep: Deployment) -> dict[str, int] | None:
        """Bytes (``done``/``total``) and files so far, from the last ``progress`` line of the runner."""
        if not dep.backend_state:
            return None
        for line in reversed((await self.logs(dep, tail=50)).splitlines()):
            parts = line.split()
            if len(parts) == 5 and parts[0] == "progress" and parts[1] == "files" and parts[3] == "bytes":
                files_done, files_total = (int(n) for n in parts[2].split("/"))
                bytes_done, bytes_total = (int(n) for n in parts[4].split("/"))
                return {
                    "done": bytes_done,
                    "total": bytes_total,
                    "files_done": files_done,
                    "files_total": files_total,
                    "bytes_done": bytes_done,
                    "bytes_total": bytes_total,
                }
        return None

    async def watch(self) -> None:
        for dep in self.mine(active_only=True):
            if dep.status != "running" or not dep.backend_state:
                continue
            status = await self.local.status(dep.backend_state)
            if not status.running:
                await self._finish(dep, status.exit_code)

    async def _finish(self, dep: Deployment, exit_code: int | None) -> None:
        """Record how the import ended, from its ``result.json``; whatever it left half-done goes."""
        result = await asyncio.to_thread(job_result, self.local, dep)
        await asyncio.to_thread(self._clean, dep)
        output = result.get("output")
        if isinstance(output, dict):
            endpoints = {**dep.endpoints, "files": output.get("files"), "bytes": output.get("bytes")}
            deps.set_status(self.settings.db_url, dep.id, "succeeded", "", endpoints=endpoints)
            return
        if result.get("error"):
            reason = str(result["error"])
        else:
            tail = await self.local.logs(dep.backend_state, tail=10)
            reason = f"the import process ended without a result (exit code {exit_code}); last log lines:\n{tail}"
        deps.set_status(self.settings.db_url, dep.id, "failed", reason)

    def _clean(self, dep: Deployment) -> None:
        """Remove the import's download folder (never the dataset: it is there whole, or not at all)."""
        try:
            tmp = self.tmp_path(dep)
        except PlatformError:  # the user made datasets/ lead out of their storage: nothing of ours there
            return
        for path in (tmp, tmp.with_name(tmp.name + ".old")):
            if path.is_symlink():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path, ignore_errors=True)

    async def stop(self, dep: Deployment, reason: str) -> None:
        """Cancel: end the download and remove what it fetched; an import that had just finished stays."""
        if dep.status in RUNNING_STATUSES and dep.backend_state:
            await self.local.stop(dep.backend_state)
            if isinstance((await asyncio.to_thread(job_result, self.local, dep)).get("output"), dict):
                await self._finish(dep, 0)
                return
        if dep.status in ACTIVE_STATUSES:
            await asyncio.to_thread(self._clean, dep)
            deps.set_status(self.settings.db_url, dep.id, "cancelled", reason)

    async def recover(self) -> None:
        """After a restart: a download still running is watched again; one that ended is read back from its
        ``result.json``; one caught starting is ended (if it was launched) and started again from scratch.
        Download folders of imports that ended while the platform was down are removed."""
        for dep in self.mine():
            if dep.status not in ACTIVE_STATUSES:
                if dep.backend_state:
                    await asyncio.to_thread(self._clean, dep)
            elif dep.status in ("starting", "queued") or not dep.backend_state:
                await self.local.stop_job(f"dataset-{dep.id}")
                await asyncio.to_thread(self._clean, dep)
                deps.set_status(self.settings.db_url, dep.id, "starting", "started again after a platform restart")
                self.spawn(self.start(dep))
            elif not (await self.local.status(dep.backend_state)).running:
                await self._finish(dep, None)


def list_datasets(storage: Any) -> list[dict[str, Any]]:
    """The folders under ``datasets/`` of a user's storage, each with its card (``dataset.json``) when it has one.

    ``storage`` is the user's :class:`~ai4lab.core.storage.UserStorage`: every
    path goes through its resolver, so a link placed in the folder leads nowhere.
    """
    if not storage.is_dir(DATASETS):
        return []
    out = []
    for entry in storage.listdir(DATASETS):
        if entry["type"] != "directory" or entry["name"].startswith("."):
            continue
        path = f"{DATASETS}/{entry['name']}"
        card: dict[str, Any] | None = None
        try:
            if storage.info(f"{path}/dataset.json")["size"] <= CARD_BYTES:
                data = json.loads(storage.read(f"{path}/dataset.json"))
                card = data if isinstance(data, dict) else None
        except (OSError, ValueError, PlatformError):  # no card, or not one the import wrote: listed without
            card = None
        files = [e for e in storage.listdir(path) if e["type"] == "file" and e["name"] not in CARD_FILES]
        out.append(
            {
                "name": entry["name"],
                "path": path,
                "files": len(files),
                "bytes": sum(e.get("size") or 0 for e in files),
                "data_files": [e["name"] for e in files[:DATA_FILES]],
                "modified": entry.get("modified"),
                "card": card,
            }
        )
    return sorted(out, key=lambda d: d["name"])
