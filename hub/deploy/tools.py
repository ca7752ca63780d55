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
from typing import Any
from urllib.parse import urlparse

from jupyterhub.utils import random_port

from ai4lab.core import deployments as deps
from ai4lab.backends.base import JobSpec
from ai4lab.backends.local import LocalBackend
from ai4lab.core.runtime import readable_copy
from ai4lab.catalog.model import CatalogItem
from ai4lab.core.db import Deployment
from ai4lab.core.envs import EnvBuildError, ensure_env, env_bin
from ai4lab.core.isolation import read_written_by
from ai4lab.flower.config import FlowerConfigError, validate_config
from ai4lab.core.process_tokens import issue_process_token
from ai4lab.core.secret_box import box_for
from ai4lab.core.settings import Settings, bundled_catalog_path
from ai4lab.core.storage import resolve_in_storage

log = logging.getLogger("ai4lab.tools")
READY_TIMEOUT = 120.0


class ToolError(ValueError):
    """A tool request that cannot be honoured: ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _hash(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


class FlowerTool:
    """The ``ai4lab-flower`` tool: a Flower server with per-deployment tokens."""

    item_id = "ai4lab-flower"

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
            raise ToolError(str(e)) from None

    def advertised_host(self) -> str:
        return self.settings.flower_advertised_host or urlparse(self.settings.public_url).hostname or "127.0.0.1"

    async def job(self, dep: Deployment, workdir: Path, port: int, token: str) -> JobSpec:
        env = await asyncio.to_thread(ensure_env, self.folder, self.settings.envs_dir)
        config = validate_config(dep.spec["config"]).server_config()
        config["tags"] = {"ai4lab.deployment": dep.id, "ai4lab.owner": dep.owner, "ai4lab.tool": self.item_id}
        (workdir / "config.json").write_text(json.dumps(config))
        self.write_tokens(workdir, [token])
        # the server writes the final model there: no symlink may lead it out of the owner's storage
        output = self.backend.user_dir(dep.owner, resolve_in_storage(self.settings.user_storage(dep.owner),
                                                                     f"models/{self.item_id}/{dep.id}"),
                                       self.settings.storage_root)
        mlflow_token = await issue_process_token(self.settings.db_url, dep, "flower")
        return JobSpec(
            name=f"tool-{dep.id}",
            command=[str(env_bin(env, "python")), "-m", "ai4lab_flower.server", "--config", str(workdir / "config.json"),
                     "--host", self.settings.flower_bind_host, "--port", str(port),
                     "--tokens", str(workdir / "tokens.json"), "--status", str(workdir / "status.json"),
                     "--output", str(output),
                     "--app-dir", str(readable_copy(self.folder, "items", self.settings.runtime_dir)),
                     *(["--tls-dir", str(workdir / "tls"), "--tls-host", self.advertised_host()]
                       if self.settings.flower_tls else [])],
            env={"PATH": os.pathsep.join([str(env / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
                 "HOME": str(workdir), "FLWR_HOME": str(workdir / "flwr"), "PYTHONUNBUFFERED": "1",
                 "MLFLOW_TRACKING_URI": self.settings.public_url + "/services/mlflow",
                 "MLFLOW_TRACKING_TOKEN": mlflow_token, "MLFLOW_EXPERIMENT_NAME": self.item_id,
                 "MLFLOW_RUN_NAME": dep.spec.get("title") or f"flower {dep.id}"},
            cwd=workdir, log_path=self.settings.logs_dir / "deployments" / f"{dep.id}.log",
            cpu=dep.spec.get("cpu"), ram_gb=(dep.spec.get("ram_mb") or 0) / 1000,
            owner=dep.owner, owned_paths=[workdir],
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
            "state": status.get("state", "starting" if dep.status in ("queued", "starting") else dep.status),
            "config": dep.spec["config"],
            "metric": metric,
            "rounds_total": dep.spec["config"]["rounds"],
            "rounds": rounds,
            "result": rounds[-1]["metrics"].get(metric) if rounds else None,
            "clients": status.get("clients", []) if dep.status == "running" else [],
            "refused": status.get("refused", 0),
            "mlflow_run_id": run_id,
            "mlflow_run": (f"{self.settings.public_url}/services/mlflow/#/experiments/"
                           f"{status.get('mlflow_experiment_id', '0')}/runs/{run_id}") if run_id else None,
            "model": f"storage/models/{self.item_id}/{dep.id}/model.npz" if status.get("model") else None,
            "error": status.get("error"),
        }

    @staticmethod
    def certificate(dep: Deployment) -> str | None:
        """The server's self-signed certificate (PEM) that clients pin, when it speaks TLS."""
        workdir = Path(dep.backend_state.get("workdir", ""))
        try:  # the user owns the folder: the file is read without following links
            return read_written_by(workdir / "tls" / "cert.pem", workdir.stat().st_uid, 2**16).decode() \
                if dep.backend_state.get("workdir") else None
        except (OSError, UnicodeDecodeError):
            return None

    def snippet(self, address: str, token: str, certificate: str | None) -> str:
        cert_arg = " --root-certificates flower-server.pem" if certificate else ""
        save = ("# save the certificate shown with the token as flower-server.pem, then\n" if certificate else "")
        return (
            "# from a terminal (any machine with ai4lab installed):\n" + save +
            f"AI4LAB_FLOWER_TOKEN={token} python -m ai4lab.flower.client --address {address}{cert_arg} "
            "--module ai4lab-digits --data my-data.csv\n\n"
            "# or from Python / a notebook:\n"
            "from ai4lab.flower.client import join\n"
            f"proc = join(address={address!r}, token={token!r}, module='ai4lab-digits', data='my-data.csv'"
            + (", root_certificates=certificate)  # certificate: the PEM text shown with the token\n"
               if certificate else ")\n")
        )


class ToolDeployments:
    """Lifecycle of ``kind="tool"`` deployments on the local backend, dispatched to each tool's driver."""

    def __init__(self, settings: Settings, backend: LocalBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.drivers: dict[str, FlowerTool] = {FlowerTool.item_id: FlowerTool(settings, backend)}
        self.box = box_for(settings.state)  # the Flower token is sealed in the database
        self._tasks: set[asyncio.Task[None]] = set()

    def driver(self, item_id: str) -> FlowerTool:
        try:
            return self.drivers[item_id]
        except KeyError:
            raise ToolError(f"tool {item_id!r} cannot be deployed on this platform; deployable tools: "
                            f"{', '.join(self.drivers)}") from None

    def create(self, owner: str, item: CatalogItem, config: dict[str, Any] | None, hardware: dict[str, Any],
               title: str = "", vo: str | None = None, warnings: list[str] | None = None) -> Deployment:
        driver = self.driver(item.id)
        spec = {"item": item.id, "title": title or item.title, "config": driver.check(config),
                "cpu": hardware.get("cpu_num", 1), "ram_mb": hardware.get("ram", 1000), "gpu_ids": [],
                "warnings": warnings or []}
        dep = deps.create(self.settings.db_url, owner=owner, kind="tool", name=item.id, spec=spec,
                          status="starting", vo=vo)
        deps.set_status(self.settings.db_url, dep.id, "starting", "starting the server",
                        backend_state={"token": self.box.seal(secrets.token_urlsafe(32))})
        task = asyncio.get_running_loop().create_task(self._start(dep.id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return deps.get(self.settings.db_url, dep.id) or dep

    async def _start(self, dep_id: str) -> None:
        dep = deps.get(self.settings.db_url, dep_id)
        if dep is None:
            return
        driver = self.driver(dep.spec["item"])
        try:
            token = self.box.open(dep.backend_state["token"]) or ""
            workdir = self.backend.user_dir(dep.owner, self.settings.deployments_root / dep_id,
                                            self.settings.deployments_root)
            port = random_port()
            deps.set_status(self.settings.db_url, dep_id, "starting", "building the tool's environment")
            job = await driver.job(dep, workdir, port, token)
            if (cur := deps.get(self.settings.db_url, dep_id)) is None or cur.status != "starting":
                return  # stopped while its environment was being built
            state = await self.backend.submit(job)
            state.update(port=port, token=self.box.seal(token), status_file=str(workdir / "status.json"),
                         workdir=str(workdir))
            deps.set_status(self.settings.db_url, dep_id, "starting", "starting the server", backend_state=state)
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                status = await self.backend.status(state)
                if not status.running:
                    tail = await self.backend.logs(state, tail=20)
                    deps.set_status(self.settings.db_url, dep_id, "failed",
                                    f"the server {status.reason}; last log lines:\n{tail}")
                    return
                if (workdir / "status.json").is_file():
                    cur = deps.get(self.settings.db_url, dep_id)
                    if cur is not None and cur.status == "starting":
                        deps.set_status(self.settings.db_url, dep_id, "running", "", endpoints={
                            "flower": f"{driver.advertised_host()}:{port}",
                            "outputs": f"storage/models/{driver.item_id}/{dep_id}"})
                    return
                await asyncio.sleep(0.2)
            await self.backend.stop(state)
            deps.set_status(self.settings.db_url, dep_id, "failed", f"not ready within {READY_TIMEOUT:g}s")
        except EnvBuildError as e:
            deps.set_status(self.settings.db_url, dep_id, "failed", f"environment build failed: {e}")
        except Exception as e:  # noqa: BLE001 - the deployment's status says what went wrong
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
        return {"token": token, "address": address, "certificate": certificate,
                "snippet": driver.snippet(address, token, certificate)}

    def rotate(self, dep: Deployment) -> dict[str, Any]:
        """A new token; the old one is refused from the server's next request on."""
        if dep.status != "running":
            raise ToolError(f"deployment {dep.id} is {dep.status}: a token can be rotated while it runs", 409)
        token = secrets.token_urlsafe(32)
        state = {**dep.backend_state, "token": self.box.seal(token)}
        self.driver(dep.spec["item"]).write_tokens(Path(state["workdir"]), [token])
        deps.set_status(self.settings.db_url, dep.id, dep.status, dep.status_reason, backend_state=state)
        return self.token(deps.get(self.settings.db_url, dep.id) or dep)

    async def stop(self, dep: Deployment, reason: str) -> None:
        if dep.backend_state.get("pid"):
            await self.backend.stop(dep.backend_state)
        if dep.status in ("queued", "starting", "running"):
            deps.set_status(self.settings.db_url, dep.id, "stopped", reason)

    # -- watch ------------------------------------------------------------------------------
    async def watch_once(self) -> None:
        for dep in deps.list_deployments(self.settings.db_url, kind="tool", active_only=True):
            if dep.status != "running" or dep.backend == "nomad":  # Nomad tools: ClusterDeployments follows them
                continue
            status = await self.backend.status(dep.backend_state)
            if status.running:
                continue
            await self._finished(dep, status.exit_code)

    async def _finished(self, dep: Deployment, exit_code: int | None) -> None:
        info = self.info(dep)
        endpoints = dict(dep.endpoints)
        for key in ("mlflow_run_id", "mlflow_run", "model"):
            if info.get(key):
                endpoints[key] = info[key]
        # exit code None: a server started before an API restart (not our child) -- its status file tells
        if exit_code in (0, None) and info["state"] == "finished":
            deps.set_status(self.settings.db_url, dep.id, "succeeded",
                            f"{len(info['rounds'])} round(s) done; {info['metric']} = {info['result']}",
                            endpoints=endpoints)
            return
        tail = await self.backend.logs(dep.backend_state, tail=15)
        reason = info.get("error") or (f"the server exited (code {exit_code})" if exit_code is not None
                                       else "the platform restarted and the server process is gone")
        deps.set_status(self.settings.db_url, dep.id, "failed", f"{reason}; last log lines:\n{tail}",
                        endpoints=endpoints)

    async def recover(self) -> None:
        """After an API restart: a server still running is watched again; one that ended meanwhile is read back
        from its status file (succeeded or failed); one caught starting is failed."""
        for dep in deps.list_deployments(self.settings.db_url, kind="tool", active_only=True):
            if dep.backend == "nomad":
                continue
            alive = bool(dep.backend_state.get("pid")) and (await self.backend.status(dep.backend_state)).running
            if dep.status == "running":
                if not alive:
                    await self._finished(dep, None)
                continue
            if alive:
                await self.backend.stop(dep.backend_state)
            deps.set_status(self.settings.db_url, dep.id, "failed", "the platform restarted while the server started")
