"""Tool deployments (``kind="tool"``): long-running catalog tools, one driver per tool.

Why a driver per tool: tools differ in what they configure and expose (a
Flower server has rounds, tokens and clients; an annotation tool would have
users and projects), but share the deployment lifecycle of the platform:
created from a validated config, started on a backend as a ``JobSpec``,
watched, stopped, recovered after a restart. :class:`ToolDeployments` does the
shared part and dispatches to the driver registered for the catalog item.

The Flower driver (:class:`FlowerTool`) runs ``ai4lab_flower.server`` (in the
tool's own cached environment, see ``config/catalog/tools/ai4lab-flower``) with:
the validated config, a file of SHA-256 hashes of the deployment's tokens
(rewritten on rotation; the server re-reads it), a status file it keeps up to
date (rounds, clients), MLflow credentials of the owner, and the owner's
storage folder ``models/ai4lab-flower/<id>/`` for the final global model. The
token itself lives only in the deployment's ``backend_state``, sealed with the
state folder's key (``ai4lab.core.secret_box``; never returned by the deployment
dict, never logged), and is shown to the owner on request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

from jupyterhub.utils import random_port
from pydantic import Field

from ai4lab.backends.base import JobSpec
from ai4lab.backends.local import LocalBackend
from ai4lab.catalog.model import CatalogItem
from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment
from ai4lab.core.envs import EnvBuildError, ensure_env, env_bin
from ai4lab.core.errors import PlatformError
from ai4lab.core.isolation import read_written_by
from ai4lab.core.process_tokens import issue_process_token
from ai4lab.core.runtime import readable_copy
from ai4lab.core.secret_box import box_for
from ai4lab.core.settings import Settings, bundled_catalog_path
from ai4lab.core.statuses import STARTING_STATUSES
from ai4lab.core.storage import in_user_storage
from ai4lab.deploy.lifecycle import (
    Caller,
    DeploymentRequest,
    ItemRequest,
    Lifecycle,
    Platform,
    chosen_hardware,
    cpu_only,
    resources,
)
from ai4lab.flower.config import FlowerConfig, FlowerConfigError, validate_config

log = logging.getLogger("ai4lab.tools")
READY_TIMEOUT = 120.0
FLOWER_ITEM = "ai4lab-flower"
CVAT_ITEM = "ai4lab-cvat"
#: Roles that may start tools (Flower servers, CVAT): the overview's intermediate and advanced users.
TOOL_ROLES = ("intermediate", "advanced")
#: The keys of each tool's ``config``.
CONFIG_FIELDS: dict[str, tuple[str, ...]] = {FLOWER_ITEM: tuple(FlowerConfig.model_fields), CVAT_ITEM: ("storage",)}


class ToolRequest(ItemRequest):
    kind: Literal["tool"]
    config: dict[str, Any] | None = Field(
        default=None,
        description="the tool's settings, e.g. ai4lab-flower: {rounds, strategy, ...}; "
        "ai4lab-cvat: {storage: {type, url, user, password}}",
    )

    def backend(self, platform: Platform) -> str:
        return "nomad" if self.item == CVAT_ITEM else "local"


def tool_item(platform: Platform, request: ToolRequest, caller: Caller) -> CatalogItem:
    """The tool a request names, once the request's config keys and the caller's role allow it."""
    if request.item in CONFIG_FIELDS and request.config:
        allowed = CONFIG_FIELDS[request.item]
        if unknown := set(request.config) - set(allowed):
            raise PlatformError.unknown_fields(("body", "config"), unknown, allowed, "config")
    item = platform.item("tool", request.item, caller, "start")
    if caller.role not in TOOL_ROLES:
        raise PlatformError(403, f"starting tools needs role {' or '.join(TOOL_ROLES)}; yours is {caller.role}")
    return item


def _hash(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


class FlowerTool:
    """The ``ai4lab-flower`` tool: a Flower server with per-deployment tokens."""

    item_id = FLOWER_ITEM

    def __init__(self, settings: Settings, backend: LocalBackend | None = None) -> None:
        self.settings = settings
        self.backend = backend or LocalBackend()

    @property
    def folder(self) -> Path:
        return bundled_catalog_path() / "tools" / self.item_id

    def check(self, config: dict[str, Any] | None) -> dict[str, Any]:
        try:
            return validate_config(config).model_dump()
        except FlowerConfigError as e:
            raise PlatformError(400, str(e)) from None

    def advertised_host(self) -> str:
        return self.settings.flower_advertised_host or urlparse(self.settings.public_url).hostname or "127.0.0.1"

    async def job(self, dep: Deployment, workdir: Path, port: int, token: str) -> JobSpec:
        env = await asyncio.to_thread(ensure_env, self.folder, self.settings.envs_dir)
        config = validate_config(dep.spec["config"]).server_config()
        config["tags"] = {"ai4lab.deployment": dep.id, "ai4lab.owner": dep.owner, "ai4lab.tool": self.item_id}
        (workdir / "config.json").write_text(json.dumps(config))
        self.write_tokens(workdir, [token])
        # the server writes the final model there: no symlink may lead it out of the owner's storage
        output = self.backend.user_dir(
            dep.owner,
            in_user_storage(self.settings.user_storage(dep.owner), f"models/{self.item_id}/{dep.id}", "output"),
            self.settings.storage_root,
        )
        mlflow_token = await issue_process_token(self.settings.db_url, dep, "flower")
        return JobSpec(
            name=f"tool-{dep.id}",
            command=[
                str(env_bin(env, "python")),
                "-m",
                "ai4lab_flower.server",
                "--config",
                str(workdir / "config.json"),
                "--host",
                self.settings.flower_bind_host,
                "--port",
                str(port),
                "--tokens",
                str(workdir / "tokens.json"),
                "--status",
                str(workdir / "status.json"),
                "--output",
                str(output),
                "--app-dir",
                str(readable_copy(self.folder, "items", self.settings.runtime_dir)),
                *(
                    ["--tls-dir", str(workdir / "tls"), "--tls-host", self.advertised_host()]
                    if self.settings.flower_tls
                    else []
                ),
            ],
            env={
                "PATH": os.pathsep.join([str(env / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
                "HOME": str(workdir),
                "FLWR_HOME": str(workdir / "flwr"),
                "PYTHONUNBUFFERED": "1",
                "MLFLOW_TRACKING_URI": self.settings.public_url + "/services/mlflow",
                "MLFLOW_TRACKING_TOKEN": mlflow_token,
                "MLFLOW_EXPERIMENT_NAME": self.item_id,
                "MLFLOW_RUN_NAME": dep.spec.get("title") or f"flower {dep.id}",
            },
            cwd=workdir,
            log_path=self.settings.logs_dir / "deployments" / f"{dep.id}.log",
            cpu=dep.spec.get("cpu"),
            ram_gb=(dep.spec.get("ram_mb") or 0) / 1000,
            owner=dep.owner,
            owned_paths=[workdir],
        )

    @staticmethod
    def write_tokens(workdir: Path, tokens: list[str]) -> None:
        """Hashes of the valid tokens, replaced atomically (the server re-reads the file when it changes).

        The file takes the work folder's owner: the server runs as the deployment's owner.
        """
        tmp = workdir / ".tokens.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump([_hash(t) for t in tokens], f)
        owner = workdir.stat()
        os.chown(tmp, owner.st_uid, owner.st_gid)
        os.replace(tmp, workdir / "tokens.json")

    @staticmethod
    def status(dep: Deployment) -> dict[str, Any]:
        path = Path(dep.backend_state.get("status_file", ""))
        try:  # written by the server, as the tool's user: never followed out of its folder
            data = json.loads(read_written_by(path, path.parent.stat().st_uid, 2**22))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def info(self, dep: Deployment) -> dict[str, Any]:
        """The Flower panel's view: address, rounds with aggregated metrics, connected clients, outputs."""
        status = self.status(dep)
        port = dep.backend_state.get("port")
        rounds = status.get("rounds", [])
        metric = dep.spec["config"].get("metric", "accuracy")
        run_id = status.get("mlflow_run_id")
        return {
            "id": dep.id,
            "address": f"{self.advertised_host()}:{port}" if port else None,
            "tls": bool(self.certificate(dep)),
            "status": dep.status,
            "status_reason": dep.status_reason,
            "state": status.get("state", "starting" if dep.status in STARTING_STATUSES else dep.status),
            "config": dep.spec["config"],
            "metric": metric,
            "rounds_total": dep.spec["config"]["rounds"],
            "rounds": rounds,
            "result": rounds[-1]["metrics"].get(metric) if rounds else None,
            "clients": status.get("clients", []) if dep.status == "running" else [],
            "refused": status.get("refused", 0),
            "mlflow_run_id": run_id,
            "mlflow_run": (
                f"{self.settings.public_url}/services/mlflow/#/experiments/"
                f"{status.get('mlflow_experiment_id', '0')}/runs/{run_id}"
            )
            if run_id
            else None,
            "model": f"storage/models/{self.item_id}/{dep.id}/model.npz" if status.get("model") else None,
            "error": status.get("error"),
        }

    @staticmethod
    def certificate(dep: Deployment) -> str | None:
        """The server's self-signed certificate (PEM) that clients pin, when it speaks TLS."""
        workdir = Path(dep.backend_state.get("workdir", ""))
        try:  # the user owns the folder: the file is read without following links
            return (
                read_written_by(workdir / "tls" / "cert.pem", workdir.stat().st_uid, 2**16).decode()
                if dep.backend_state.get("workdir")
                else None
            )
        except (OSError, UnicodeDecodeError):
            return None

    def snippet(self, address: str, token: str, certificate: str | None) -> str:
        cert_arg = " --root-certificates flower-server.pem" if certificate else ""
        save = "# save the certificate shown with the token as flower-server.pem, then\n" if certificate else ""
        return (
            "# from a terminal (any machine with ai4lab installed):\n"
            + save
            + f"AI4LAB_FLOWER_TOKEN={token} python -m ai4lab.flower.client --address {address}{cert_arg} "
            "--module ai4lab-digits --data my-data.csv\n\n"
            "# or from Python / a notebook:\n"
            "from ai4lab.flower.client import join\n"
            f"proc = join(address={address!r}, token={token!r}, module='ai4lab-digits', data='my-data.csv'"
            + (
                ", root_certificates=certificate)  # certificate: the PEM text shown with the token\n"
                if certificate
                else ")\n"
            )
        )


class LocalTools(Lifecycle):
    """``kind="tool"`` deployments on the local backend, dispatched to each tool's driver."""

    kinds: ClassVar[tuple[str, ...]] = ("tool",)
    backend: ClassVar[str] = "local"
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = (ToolRequest,)
    takes_secrets: ClassVar[bool] = True

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.local = platform.local
        self.drivers: dict[str, FlowerTool] = {FlowerTool.item_id: FlowerTool(self.settings, self.local)}
        self.box = box_for(self.settings.state)  # the Flower token is sealed in the database

    def driver(self, item_id: str) -> FlowerTool:
        try:
            return self.drivers[item_id]
        except KeyError:
            raise PlatformError(
                400,
                f"tool {item_id!r} cannot be deployed on this platform; deployable tools: {', '.join(self.drivers)}",
            ) from None

    async def create(self, request: ToolRequest, caller: Caller) -> Deployment:
        item = tool_item(self.platform, request, caller)
        # the same checks as a module's: the role's quota and the tool's own minimum resources
        form = self.platform.form(item, caller)
        asked = request.hardware.chosen()
        hardware = chosen_hardware(form, asked)
        warnings = cpu_only(form, hardware, asked, "tools")
        driver = self.driver(item.id)
        spec = {
            "item": item.id,
            "title": request.title or item.title,
            "config": driver.check(request.config),
            **resources(hardware, ram_mb=1000),
            "warnings": warnings,
        }
        dep = self.record(caller, "tool", item, spec, "starting", request)
        deps.set_status(
            self.settings.db_url,
            dep.id,
            "starting",
            "starting the server",
            backend_state={"token": self.box.seal(secrets.token_urlsafe(32))},
        )
        dep = deps.get(self.settings.db_url, dep.id) or dep
        self.spawn(self.start(dep))
        return dep

    async def start(self, dep: Deployment) -> None:
        dep_id = dep.id
        driver = self.driver(dep.spec["item"])
        try:
            token = self.box.open(dep.backend_state["token"]) or ""
            workdir = self.local.user_dir(
                dep.owner, self.settings.deployments_root / dep_id, self.settings.deployments_root
            )
            port = random_port()
            deps.set_status(self.settings.db_url, dep_id, "starting", "building the tool's environment")
            job = self.with_secrets(await driver.job(dep, workdir, port, token), dep)
            if (cur := deps.get(self.settings.db_url, dep_id)) is None or cur.status != "starting":
                return  # stopped while its environment was being built
            # a server launched before a platform restart may have left its status file: wait for this one's own
            (workdir / "status.json").unlink(missing_ok=True)
            state = await self.local.submit(job)
            state.update(
                port=port, token=self.box.seal(token), status_file=str(workdir / "status.json"), workdir=str(workdir)
            )
            deps.set_status(self.settings.db_url, dep_id, "starting", "starting the server", backend_state=state)
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                status = await self.local.status(state)
                if not status.running:
                    tail = await self.local.logs(state, tail=20)
                    deps.set_status(
                        self.settings.db_url, dep_id, "failed", f"the server {status.reason}; last log lines:\n{tail}"
                    )
                    return
                if (workdir / "status.json").is_file():
                    cur = deps.get(self.settings.db_url, dep_id)
                    if cur is not None and cur.status == "starting":
                        deps.set_status(
                            self.settings.db_url,
                            dep_id,
                            "running",
                            "",
                            endpoints={
                                "flower": f"{driver.advertised_host()}:{port}",
                                "outputs": f"storage/models/{driver.item_id}/{dep_id}",
                            },
                        )
                    return
                await asyncio.sleep(0.2)
            await self.local.stop(state)
            deps.set_status(self.settings.db_url, dep_id, "failed", f"not ready within {READY_TIMEOUT:g}s")
        except EnvBuildError as e:
            deps.set_status(self.settings.db_url, dep_id, "failed", f"environment build failed: {e}")
        except Exception as e:
            log.exception("tool deployment %s failed to start", dep_id)
            deps.set_status(self.settings.db_url, dep_id, "failed", f"could not start: {e}")

    # -- owner actions ----------------------------------------------------------------------
    def info(self, dep: Deployment) -> dict[str, Any]:
        return self.driver(dep.spec["item"]).info(dep)

    def token(self, dep: Deployment) -> dict[str, Any]:
        driver = self.driver(dep.spec["item"])
        token = self.box.open(dep.backend_state.get("token")) or ""
        address = driver.info(dep)["address"] or "<address once running>"
        certificate = driver.certificate(dep)
        return {
            "token": token,
            "address": address,
            "certificate": certificate,
            "snippet": driver.snippet(address, token, certificate),
        }

    def rotate(self, dep: Deployment) -> dict[str, Any]:
        """A new token; the old one is refused from the server's next request on."""
        if dep.status != "running":
            raise PlatformError(409, f"deployment {dep.id} is {dep.status}: a token can be rotated while it runs")
        token = secrets.token_urlsafe(32)
        state = {**dep.backend_state, "token": self.box.seal(token)}
        self.driver(dep.spec["item"]).write_tokens(Path(state["workdir"]), [token])
        deps.set_status(self.settings.db_url, dep.id, dep.status, dep.status_reason, backend_state=state)
        return self.token(deps.get(self.settings.db_url, dep.id) or dep)

    async def stop(self, dep: Deployment, reason: str) -> None:
        if dep.backend_state.get("pid"):
            await self.local.stop(dep.backend_state)
        await super().stop(dep, reason)

    # -- watch ------------------------------------------------------------------------------
    async def watch(self) -> None:
        for dep in self.mine(active_only=True):
            if dep.status != "running":
                continue
            status = await self.local.status(dep.backend_state)
            if not status.running:
                await self._finished(dep, status.exit_code)

    async def _finished(self, dep: Deployment, exit_code: int | None) -> None:
        info = self.info(dep)
        endpoints = dict(dep.endpoints)
        for key in ("mlflow_run_id", "mlflow_run", "model"):
            if info.get(key):
                endpoints[key] = info[key]
        # exit code None: a server started before an API restart (not our child) -- its status file tells
        if exit_code in (0, None) and info["state"] == "finished":
            deps.set_status(
                self.settings.db_url,
                dep.id,
                "succeeded",
                f"{len(info['rounds'])} round(s) done; {info['metric']} = {info['result']}",
                endpoints=endpoints,
            )
            return
        tail = await self.local.logs(dep.backend_state, tail=15)
        reason = info.get("error") or (
            f"the server exited (code {exit_code})"
            if exit_code is not None
            else "the server ended while the platform was down, without finishing"
        )
        deps.set_status(
            self.settings.db_url, dep.id, "failed", f"{reason}; last log lines:\n{tail}", endpoints=endpoints
        )

    async def recover(self) -> None:
        """After an API restart: a server still running is watched again; one that ended meanwhile is read back
        from its status file (succeeded or failed); one caught starting is ended, if it was launched at all,
        and started again."""
        for dep in self.mine(active_only=True):
            alive = bool(dep.backend_state.get("pid")) and (await self.local.status(dep.backend_state)).running
            if dep.status == "running":
                if not alive:
                    await self._finished(dep, None)
                continue
            if alive:
                await self.local.stop(dep.backend_state)
            await self.local.stop_job(f"tool-{dep.id}")
            deps.set_status(self.settings.db_url, dep.id, "starting", "starting again after a platform restart")
            self.spawn(self.start(dep))
