"""Trainings: a module's ``train()`` on the user's data as a batch job, queued by quota.

A training is a deployment of kind ``training``. Its arguments are checked
against the module's own ``get_train_args`` before anything starts; it waits in
a first-come queue while the owner's role quota (or the GPUs) are taken; it
runs ``train_runner.py`` in the module's environment on the local backend
with an MLflow run tagged with the deployment, and writes its outputs to
``storage/models/<module>/<deployment id>/`` in the owner's storage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ai4lab.core import accounts, isolation
from ai4lab.core import deployments as deps
from ai4lab.backends.base import JobSpec
from ai4lab.backends.local import LocalBackend
from ai4lab.catalog.model import CatalogItem
from ai4lab.core.db import Deployment
from ai4lab.deploy import module_env, runner, runner_result
from ai4lab.deploy.module_code import link_folder, runner_env, working_copy
from ai4lab.core.envs import ensure_env, env_bin, env_repo
from ai4lab.core.isolation import give_tree
from ai4lab.core.process_tokens import issue_process_token
from ai4lab.core.settings import Settings
from ai4lab.core.storage import StoragePathError, resolve_in_storage

log = logging.getLogger("ai4lab.trainings")
JOB_KINDS = ("training", "batch")


class TrainingError(ValueError):
    """A training request that cannot be honoured: ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _extras(package: Path) -> tuple[str, ...]:
    import tomllib

    try:
        data = tomllib.loads((package / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return ()
    return ("mlflow",) if "mlflow" in data.get("project", {}).get("optional-dependencies", {}) else ()


class Trainings:
    def __init__(self, settings: Settings, backend: LocalBackend) -> None:
        self.settings = settings
        self.backend = backend
        self._lock = asyncio.Lock()

    # -- environment and arguments ---------------------------------------------------------
    def env_for(self, item: CatalogItem) -> Path:
        package = Path(item.run.package_path or "")
        return ensure_env(package, self.settings.envs_dir, extras=_extras(package))

    def _runner(self, env: Path, request: dict[str, Any], flag: str, owner: str | None = None) -> Any:
        """Run the train runner once (describe or check the arguments) as ``owner``, or as nobody."""
        ident = self.backend.identity(owner) if owner else self.backend.accounts.nobody()
        work = Path(tempfile.mkdtemp(prefix="ai4lab-args-"))
        try:
            (work / "request.json").write_text(json.dumps(request))
            give_tree(work, ident)
            # in the environment's (read-only) repository: modules read their files relative to it
            repo = env_repo(env)
            proc = isolation.run(ident, [str(env_bin(env, "python")), str(runner(self.settings, "train_runner.py")),
                                         str(work / "request.json"), flag],
                                 env=isolation.user_env(ident, work, runner_env(env, request["model"], repo)),
                                 cwd=repo)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result = runner_result(proc.stdout)
        if result is None:
            raise TrainingError(f"the module could not be loaded: {proc.stderr.strip()[-500:]}", 500)
        return result

    def describe_args(self, item: CatalogItem) -> dict[str, Any]:
        return self._runner(self.env_for(item), {"model": item.run.entry_point}, "--describe")

    def model_file(self, owner: str, training_id: str) -> Path:
        """The model file a succeeded training of ``owner`` wrote (for deploying or continuing it)."""
        dep = deps.get(self.settings.db_url, training_id)
        if dep is None or dep.owner != owner or dep.kind != "training":
            raise TrainingError(f"no training {training_id!r} of yours", 404)
        if dep.status != "succeeded":
            raise TrainingError(f"training {training_id} is {dep.status}, not succeeded", 409)
        path = dep.endpoints.get("model_path")
        if not path:
            raise TrainingError(f"training {training_id} left no model file")
        # the path comes from the training's own code: only a file in the owner's storage is used
        root = Path(os.path.realpath(self.settings.user_storage(owner)))
        try:
            rel = Path(os.path.realpath(path)).relative_to(root)
        except ValueError:
            raise TrainingError(f"training {training_id} names a model file outside your storage") from None
        model = self.in_storage(owner, rel.as_posix(), "model")
        if not model.is_file():
            raise TrainingError(f"training {training_id} left no model file")
        return model

    # -- create ---------------------------------------------------------------------------
    async def create(
        self, owner: str, item: CatalogItem, *, dataset: str | None, args: dict[str, Any],
        hardware: dict[str, Any], init_weights: str | None = None, title: str = "", warnings: list[str] | None = None,
    ) -> Deployment:
        acc = accounts.get_user(self.settings.db_url, owner) or accounts.ensure_user(self.settings.db_url, owner)
        quota = self.settings.quotas[acc.role]
        if quota.trainings < 1:
            raise TrainingError(f"training needs role intermediate or advanced; yours is {acc.role}", 403)
        if not item.run.package_path or not item.run.entry_point:
            raise TrainingError(f"{item.id} has no local package: it can only be trained from its image on a cluster")
        gpu = int(hardware.get("gpu_num", 0) or 0)
        if gpu > min(quota.gpu, len(self.settings.gpus)):
            raise TrainingError(f"{gpu} GPU(s) asked: the {acc.role} quota allows {quota.gpu}, "
                                f"this platform has {len(self.settings.gpus)}")
        args = dict(args)
        platform_args: dict[str, str] = {}
        if dataset is not None:
            found = self.in_storage(owner, dataset, "dataset")
            if not found.exists():
                raise TrainingError(f"dataset: no {dataset!r} in your storage")
            platform_args["dataset"] = str(found)
        if init_weights:
            platform_args["init_weights"] = str(self.model_file(owner, init_weights))
        env = await asyncio.to_thread(self.env_for, item)
        verdict = await asyncio.to_thread(self._runner, env, {"model": item.run.entry_point, "args": args,
                                                              "platform_args": platform_args}, "--check", owner)
        if not verdict["ok"]:
            raise TrainingError(verdict["reason"])
        spec = {
            "item": item.id, "entry_point": item.run.entry_point, "package_path": item.run.package_path,
            "title": title or f"train {item.id}", "dataset": dataset, "args": args, "init_weights": init_weights,
            "platform_args": platform_args, "warnings": warnings or [],
            "cpu": hardware.get("cpu_num", 1), "ram_mb": hardware.get("ram", 2000), "gpu": gpu, "gpu_ids": [],
        }
        dep = deps.create(self.settings.db_url, owner=owner, kind="training", name=item.id, spec=spec,
                          status="queued", vo=acc.vo)
        await self.schedule()
        return deps.get(self.settings.db_url, dep.id) or dep

    async def create_batch(
        self, owner: str, item: CatalogItem, *, input_path: str, output_path: str, fields: dict[str, Any],
        file_field: str | None = None, weights: str | None = None, title: str = "",
    ) -> Deployment:
        """Predict over a folder of the user's storage, results to another folder, as a queued job."""
        acc = accounts.get_user(self.settings.db_url, owner) or accounts.ensure_user(self.settings.db_url, owner)
        if self.settings.quotas[acc.role].trainings < 1:
            raise TrainingError(f"batch jobs need role intermediate or advanced; yours is {acc.role}", 403)
        if not item.run.package_path or not item.run.entry_point:
            raise TrainingError(f"{item.id} has no local package")
        root = self.in_storage(owner, "", "input")
        src, dst = self.in_storage(owner, input_path, "input"), self.in_storage(owner, output_path, "output")
        if src == root or not src.is_dir():
            raise TrainingError(f"input: no folder {input_path!r} in your storage")
        if dst == root or dst == src or src in dst.parents:
            raise TrainingError("output: give a folder outside the input folder")
        fields = dict(fields)
        if weights:
            fields["weights"] = str(self.model_file(owner, weights))
        spec = {"item": item.id, "entry_point": item.run.entry_point, "package_path": item.run.package_path,
                "title": title or f"batch {item.id}", "input": input_path, "output": output_path,
                "input_abs": str(src), "output_abs": str(dst), "fields": fields,
                "file_field": file_field, "gpu": 0, "gpu_ids": []}
        dep = deps.create(self.settings.db_url, owner=owner, kind="batch", name=item.id, spec=spec, status="queued",
                          vo=acc.vo)
        await self.schedule()
        return deps.get(self.settings.db_url, dep.id) or dep

    def in_storage(self, owner: str, path: str, what: str) -> Path:
        """The real location of ``path`` (``storage/`` prefix optional) in ``owner``'s storage.

        Why: jobs read and write these folders with the platform's rights, so a
        symlink the user placed must not lead them elsewhere (TrainingError 400).
        Checked when the job is created and again when it starts: links can
        change while it waits in the queue.
        """
        try:
            return resolve_in_storage(self.settings.user_storage(owner), path.removeprefix("storage/"))
        except StoragePathError as e:
            raise TrainingError(f"{what}: {e}") from None

    def progress(self, dep: Deployment, log_text: str) -> dict[str, int] | None:
        for line in reversed(log_text.splitlines()):
            if line.startswith("progress "):
                done, total = line.split()[1].split("/")
                return {"done": int(done), "total": int(total)}
        return None

    # -- queue ----------------------------------------------------------------------------
    async def schedule(self) -> None:
        """Start queued trainings, oldest first, while their owner's quota and the GPUs allow."""
        async with self._lock:
            active = [d for kind in JOB_KINDS
                      for d in deps.list_deployments(self.settings.db_url, kind=kind, active_only=True, backend="local")]
            running = [d for d in active if d.status in ("starting", "running")]
            queued = sorted((d for d in active if d.status == "queued"), key=lambda d: d.created_at)
            used_gpus = deps.gpus_in_use(self.settings.db_url)
            for dep in queued:
                acc = accounts.get_user(self.settings.db_url, dep.owner)
                quota = self.settings.quotas[acc.role if acc else "basic"]
                mine = sum(1 for d in running if d.owner == dep.owner)
                free = [g.id for g in self.settings.gpus if g.id not in used_gpus]
                if mine >= quota.trainings:
                    self._waiting(dep, f"waiting: {mine} training(s) of yours running, the quota allows "
                                       f"{quota.trainings}")
                    continue
                if dep.spec.get("gpu", 0) > len(free):
                    self._waiting(dep, f"waiting for {dep.spec['gpu']} free GPU(s)")
                    continue
                gpu_ids = free[: dep.spec.get("gpu", 0)]
                used_gpus.update(gpu_ids)
                deps.set_status(self.settings.db_url, dep.id, "starting", "", spec={**dep.spec, "gpu_ids": gpu_ids})
                running.append(dep)
                await self._start(dep.id)

    def _waiting(self, dep: Deployment, reason: str) -> None:
        if dep.status_reason != reason:
            deps.set_status(self.settings.db_url, dep.id, "queued", reason)

    async def _start(self, dep_id: str) -> None:
        dep = deps.get(self.settings.db_url, dep_id)
        assert dep is not None
        spec = dict(dep.spec)
        try:
            env = await asyncio.to_thread(self.env_for, self._item_stub(spec))
            workdir = self.backend.user_dir(dep.owner, self.settings.deployments_root / dep_id,
                                            self.settings.deployments_root)
            ident = self.backend.identity(dep.owner)
            repo = await asyncio.to_thread(working_copy, env, workdir, ident)
            if dep.kind == "batch":
                request: dict[str, Any] = {
                    "model": spec["entry_point"], "input": str(self.in_storage(dep.owner, spec["input"], "input")),
                    "output": str(self.in_storage(dep.owner, spec["output"], "output")),
                    "fields": spec["fields"], "file_field": spec.get("file_field"),
                    "result": str(workdir / "result.json"),
                }
            else:
                out = self.backend.user_dir(dep.owner, self.in_storage(dep.owner, f"models/{spec['item']}/{dep_id}",
                                                                       "outputs"), self.settings.storage_root)
                platform_args = {**spec.get("platform_args", {}), "output_dir": str(out)}
                dataset = None
                if spec.get("dataset") is not None:
                    dataset = self.in_storage(dep.owner, spec["dataset"], "dataset")
                    platform_args["dataset"] = str(dataset)
                # the repository's models/ is the output folder; its data/ shows the dataset
                await asyncio.to_thread(self._wire_folders, repo, out, dataset, ident)
                request = {
                    "model": spec["entry_point"], "args": spec["args"], "platform_args": platform_args,
                    "result": str(workdir / "result.json"),
                    "run_name": spec["title"],
                    "tags": {"ai4lab.deployment": dep_id, "ai4lab.owner": dep.owner, "ai4lab.module": spec["item"],
                             "ai4lab.dataset": spec.get("dataset") or "",
                             "ai4lab.parent_run": spec.get("init_weights") or ""},
                }
            (workdir / "request.json").write_text(json.dumps(request))
            token = await issue_process_token(self.settings.db_url, dep, dep.kind)
            env_vars = module_env(
                self.settings, self.backend, dep.owner, env, workdir, repo=repo, app=spec["entry_point"],
                MLFLOW_TRACKING_URI=self.settings.public_url + "/services/mlflow",
                MLFLOW_TRACKING_TOKEN=token,
                MLFLOW_EXPERIMENT_NAME=spec["item"],
                MLFLOW_RUN_NAME=spec["title"],
            )
            script = runner(self.settings, "batch_runner.py" if dep.kind == "batch" else "train_runner.py")
            job = JobSpec(name=f"{dep.kind}-{dep_id}", command=[str(env_bin(env, "python")), str(script),
                                                               str(workdir / "request.json")],
                          env=env_vars, cwd=repo, log_path=self.settings.logs_dir / "deployments" / f"{dep_id}.log",
                          cpu=spec.get("cpu"), ram_gb=(spec.get("ram_mb") or 0) / 1000, gpu_ids=spec["gpu_ids"],
                          owner=dep.owner, owned_paths=[workdir])
            state = await self.backend.submit(job)
            state["result"] = request["result"]
            outputs = spec["output"] if dep.kind == "batch" else f"storage/models/{spec['item']}/{dep_id}"
            deps.set_status(self.settings.db_url, dep_id, "running", "", backend_state=state,
                            endpoints={"outputs": outputs})
        except Exception as e:  # noqa: BLE001 - the training's status says what went wrong
            log.exception("training %s failed to start", dep_id)
            deps.set_status(self.settings.db_url, dep_id, "failed", f"could not start: {e}")

    @staticmethod
    def _wire_folders(repo: Path, out: Path, dataset: Path | None, ident: isolation.Identity) -> None:
        """``models/`` of the training's working copy leads to its output folder, ``data/`` to the dataset.

        Why: modules from the AI4OS template train on ``data/`` and save to
        ``models/`` (in AI4OS, synced with the user's storage by hand). Here
        what they save is in the user's storage when the training ends.
        """
        link_folder(repo, "models", out, ident)
        if dataset is None:
            return
        if dataset.is_dir():
            link_folder(repo, "data", dataset, ident, merge=False)
            return
        data = repo / "data"  # a single file: data/ holds it, beside what the repository ships there
        if data.is_symlink():
            data.unlink()
        isolation.private_dir(data, ident, repo)
        link = data / dataset.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(dataset)
            isolation.give(link, ident)

    @staticmethod
    def _item_stub(spec: dict[str, Any]) -> CatalogItem:
        from ai4lab.catalog.model import RunInfo

        return CatalogItem(id=spec["item"], kind="module", title=spec["item"], summary="", source="training",
                           run=RunInfo(package_path=spec["package_path"], entry_point=spec["entry_point"]))

    # -- watch ----------------------------------------------------------------------------
    async def watch_once(self) -> None:
        for dep in [d for kind in JOB_KINDS for d in deps.list_deployments(self.settings.db_url, kind=kind,
                                                                            active_only=True, backend="local")]:
            if dep.status != "running" or not dep.backend_state:
                continue
            status = await self.backend.status(dep.backend_state)
            if status.running:
                continue
            await self._finish(dep, status.exit_code, status.reason)
        await self.schedule()

    async def _finish(self, dep: Deployment, exit_code: int | None, ended: str = "") -> None:
        result_path = Path(dep.backend_state.get("result", ""))
        try:  # written by the job, as its user: never followed out of the job's folder
            result = json.loads(isolation.read_written_by(result_path, self.backend.identity(dep.owner).uid, 2**22))
        except (OSError, ValueError, isolation.IsolationError):
            result = {}
        if not isinstance(result, dict):
            result = {}
        endpoints = dict(dep.endpoints)
        run_id = result.get("mlflow_run_id")
        if run_id:
            endpoints["mlflow_run_id"] = run_id
            exp = result.get("mlflow_experiment_id") or "0"
            endpoints["mlflow_run"] = f"{self.settings.public_url}/services/mlflow/#/experiments/{exp}/runs/{run_id}"
        output = result.get("output") or {}
        if isinstance(output, dict):
            for key in ("model_path", "metrics_path"):
                if output.get(key):
                    endpoints[key] = output[key]
            endpoints["result"] = {k: v for k, v in output.items() if isinstance(v, (int, float, str))}
        if exit_code == 0 and "output" in result:
            deps.set_status(self.settings.db_url, dep.id, "succeeded", "", endpoints=endpoints)
            return
        if dep.kind == "batch" and "output" in result:
            failed = result["output"].get("failed", 0)
            deps.set_status(self.settings.db_url, dep.id, "failed",
                            f"{failed} of {result['output'].get('files')} file(s) could not be predicted; "
                            "their reasons are in the output folder", endpoints=endpoints)
            return
        tail = await self.backend.logs(dep.backend_state, tail=15)
        # the backend's reason first when the kernel ended it ("out of memory: limit 2 GB")
        reason = ended if ended.startswith("out of memory") else result.get("error") or "the training process died"
        deps.set_status(self.settings.db_url, dep.id, "failed",
                        f"{reason} (exit code {exit_code}); last log lines:\n{tail}", endpoints=endpoints)

    async def cancel(self, dep: Deployment, by: str) -> None:
        if dep.status in ("starting", "running") and dep.backend_state:
            await self.backend.stop(dep.backend_state)
        if dep.status in ("queued", "starting", "running"):
            deps.set_status(self.settings.db_url, dep.id, "cancelled", f"cancelled by {by}")
        await self.schedule()

    async def recover(self) -> None:
        """After a restart: a training still running is watched again; one whose process is gone failed."""
        for dep in [d for kind in JOB_KINDS for d in deps.list_deployments(self.settings.db_url, kind=kind,
                                                                            active_only=True, backend="local")]:
            if dep.status == "starting" or (dep.status == "running" and not dep.backend_state):
                deps.set_status(self.settings.db_url, dep.id, "failed", "the platform restarted while it started")
            elif dep.status == "running" and not (await self.backend.status(dep.backend_state)).running:
                result = Path(dep.backend_state.get("result", ""))
                if result.is_file():
                    try:
                        written = isolation.read_written_by(result, self.backend.identity(dep.owner).uid, 2**22)
                    except (OSError, isolation.IsolationError):
                        written = b""
                    await self._finish(dep, 0 if b'"output"' in written else 1)
                else:
                    deps.set_status(self.settings.db_url, dep.id, "failed",
                                    "the platform restarted and the training process is gone")
        await self.schedule()
