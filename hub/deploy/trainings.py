"""Trainings and batch jobs (kinds ``training`` and ``batch``) on the local backend, queued by quota.

A training runs a module's ``train()`` on the user's data. Its arguments are
checked against the module's own ``get_train_args`` before anything starts; it
waits in a first-come queue (shared with batch jobs) while the owner's role
quota (or the GPUs) are taken; it runs ``train_runner.py`` in the module's
environment with an MLflow run tagged with the deployment, and writes its
outputs to ``storage/models/<module>/<deployment id>/`` in the owner's storage.
A batch job runs ``batch_runner.py``: the module's ``predict()`` over a folder.

Both runners write ``result.json`` last. That file, not the process's exit
code, says how a job ended: after a platform restart the job is no child of
the API any more and its exit code is unknown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ai4lab.backends.base import JobSpec
from ai4lab.catalog.deploy_config import check_choice
from ai4lab.catalog.model import CatalogItem
from ai4lab.core import deployments as deps
from ai4lab.core import isolation
from ai4lab.core.db import ACTIVE_STATUSES, Deployment
from ai4lab.core.envs import ensure_env, env_bin, env_repo
from ai4lab.core.errors import PlatformError
from ai4lab.core.isolation import give_tree
from ai4lab.core.process_tokens import issue_process_token
from ai4lab.core.settings import Settings
from ai4lab.core.statuses import RUNNING_STATUSES
from ai4lab.core.storage import in_user_storage, storage_not_full
from ai4lab.deploy import module_env, runner, runner_result
from ai4lab.deploy.lifecycle import Caller, DeploymentRequest, ItemRequest, Lifecycle, Platform, resources
from ai4lab.deploy.module_code import link_folder, runner_env, working_copy

if TYPE_CHECKING:
    from ai4lab.backends.local import LocalBackend

log = logging.getLogger("ai4lab.trainings")
JOB_KINDS = ("training", "batch")


class TrainingRequest(ItemRequest):
    kind: Literal["training"]
    dataset: str | None = Field(default=None, description="folder or file in your storage")
    args: dict[str, Any] = Field(default_factory=dict, description="the module's train arguments")
    init_weights: str | None = Field(default=None, description="start from the model of this training (its id)")
    workers: int = Field(
        default=1,
        ge=1,
        le=8,
        description="processes of a data-parallel training: the module's train() runs in each, joined by "
        "torch.distributed's env:// variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as torchrun does",
    )


class BatchRequest(ItemRequest):
    kind: Literal["batch"]
    input: str = Field(min_length=1, description="folder of files in your storage to predict on")
    output: str = Field(min_length=1, description="folder in your storage for the results")
    fields: dict[str, Any] = Field(default_factory=dict, description="other predict arguments")
    file_field: str | None = Field(default=None, description="the predict field that takes each file")
    weights: str | None = Field(default=None, description="weights to predict with: a training id")


def in_storage(settings: Settings, owner: str, path: str, what: str) -> Path:
    """The real location of ``path`` in ``owner``'s storage (400 naming ``what`` when it leaves it).

    Why: jobs read and write these folders, so a symlink the user placed must
    not lead them elsewhere. Checked when the job is created and again when it
    starts: links can change while it waits in the queue.
    """
    return in_user_storage(settings.user_storage(owner), path, what)


def model_file(settings: Settings, owner: str, training_id: str) -> Path:
    """The model file a succeeded training of ``owner`` wrote (for deploying or continuing it)."""
    dep = deps.get(settings.db_url, training_id)
    if dep is None or dep.owner != owner or dep.kind != "training":
        raise PlatformError(404, f"no training {training_id!r} of yours")
    if dep.status != "succeeded":
        raise PlatformError(409, f"training {training_id} is {dep.status}, not succeeded")
    path = dep.endpoints.get("model_path")
    if not path:
        raise PlatformError(400, f"training {training_id} left no model file")
    # the path comes from the training's own code: only a file in the owner's storage is used
    root = Path(os.path.realpath(settings.user_storage(owner)))
    try:
        rel = Path(os.path.realpath(path)).relative_to(root)
    except ValueError:
        raise PlatformError(400, f"training {training_id} names a model file outside your storage") from None
    model = in_storage(settings, owner, rel.as_posix(), "model")
    if not model.is_file():
        raise PlatformError(400, f"training {training_id} left no model file")
    return model


def job_result(local: LocalBackend, dep: Deployment) -> dict[str, Any]:
    """What a job's runner wrote last (``result.json``, named in its state), or {} when it wrote nothing readable."""
    path = Path(dep.backend_state.get("result", ""))
    try:  # written by the job, as its user: never followed out of the job's folder
        result = json.loads(isolation.read_written_by(path, local.identity(dep.owner).uid, 2**22))
    except (OSError, ValueError, isolation.IsolationError):
        return {}
    return result if isinstance(result, dict) else {}


def _extras(package: Path) -> tuple[str, ...]:
    import tomllib

    try:
        data = tomllib.loads((package / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return ()
    return ("mlflow",) if "mlflow" in data.get("project", {}).get("optional-dependencies", {}) else ()


class LocalJobs(Lifecycle):
    """Trainings and batch jobs on this machine: one queue, one scheduler."""

    kinds: ClassVar[tuple[str, ...]] = JOB_KINDS
    backend: ClassVar[str] = "local"
    requests: ClassVar[tuple[type[DeploymentRequest], ...]] = (TrainingRequest, BatchRequest)
    takes_secrets: ClassVar[bool] = True

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self.local = platform.local
        self._lock = platform.lock("local-jobs")

    # -- environment and arguments ---------------------------------------------------------
    def env_for(self, item: CatalogItem) -> Path:
        package = Path(item.run.package_path or "")
        return ensure_env(
            package, self.settings.envs_dir, extras=_extras(package), find_links=self.settings.env_find_links
        )

    def _runner(self, env: Path, request: dict[str, Any], flag: str, owner: str | None = None) -> Any:
        """Run the train runner once (describe or check the arguments) as ``owner``, or as nobody."""
        ident = self.local.identity(owner) if owner else self.local.accounts.nobody()
        work = Path(tempfile.mkdtemp(prefix="ai4lab-args-"))
        try:
            (work / "request.json").write_text(json.dumps(request))
            give_tree(work, ident)
            # in the environment's (read-only) repository: modules read their files relative to it
            repo = env_repo(env)
            proc = isolation.run(
                ident,
                [
                    str(env_bin(env, "python")),
                    str(runner(self.settings, "train_runner.py")),
                    str(work / "request.json"),
                    flag,
                ],
                env=isolation.user_env(ident, work, runner_env(env, request["model"], repo)),
                cwd=repo,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result = runner_result(proc.stdout)
        if result is None:
            raise PlatformError(500, f"the module could not be loaded: {proc.stderr.strip()[-500:]}")
        return result

    def describe_args(self, item: CatalogItem) -> dict[str, Any]:
        return self._runner(self.env_for(item), {"model": item.run.entry_point}, "--describe")

    # -- create ---------------------------------------------------------------------------
    async def create(self, request: TrainingRequest | BatchRequest, caller: Caller) -> Deployment:
        """Check the request against the module's training form, then queue it."""
        item = self.platform.item("module", request.item, caller, "train" if request.kind == "training" else "run")
        form = self.platform.form(item, caller, purpose="training")
        asked = request.hardware.chosen()
        if problems := check_choice(form, asked):
            raise PlatformError(400, "hardware: " + "; ".join(problems))
        await asyncio.to_thread(storage_not_full, self.settings, caller.name, caller.role, request.kind)
        if isinstance(request, BatchRequest):
            dep = await self._create_batch(caller, item, request)
        else:
            hardware = {k: f["value"] for k, f in form["hardware"].items() if "range" in f} | asked
            dep = await self._create_training(caller, item, request, hardware, form["warnings"])
        await self.schedule()
        return deps.get(self.settings.db_url, dep.id) or dep

    async def _create_training(
        self, caller: Caller, item: CatalogItem, request: TrainingRequest, hardware: dict[str, Any], warnings: list[str]
    ) -> Deployment:
        owner, dataset, init_weights = caller.name, request.dataset, request.init_weights
        quota = self.settings.quotas[caller.role]
        if quota.trainings < 1:
            raise PlatformError(403, f"training needs role intermediate or advanced; yours is {caller.role}")
        if not item.run.package_path or not item.run.entry_point:
            raise PlatformError(
                400, f"{item.id} has no local package: it can only be trained from its image on a cluster"
            )
        gpu = int(hardware.get("gpu_num", 0) or 0)
        if gpu and request.workers > gpu:
            raise PlatformError(
                400, f"{request.workers} workers with {gpu} GPU(s): each worker needs its own GPU; ask for more"
            )
        if gpu > min(quota.gpu, len(self.settings.gpus)):
            raise PlatformError(
                400,
                f"{gpu} GPU(s) asked: the {caller.role} quota allows {quota.gpu}, "
                f"this platform has {len(self.settings.gpus)}",
            )
        args = dict(request.args)
        platform_args: dict[str, str] = {}
        if dataset is not None:
            found = self.in_storage(owner, dataset, "dataset")
            if not found.exists():
                raise PlatformError(400, f"dataset: no {dataset!r} in your storage")
            platform_args["dataset"] = str(found)
        if init_weights:
            platform_args["init_weights"] = str(model_file(self.settings, owner, init_weights))
        env = await asyncio.to_thread(self.env_for, item)
        verdict = await asyncio.to_thread(
            self._runner,
            env,
            {"model": item.run.entry_point, "args": args, "platform_args": platform_args},
            "--check",
            owner,
        )
        if not verdict["ok"]:
            raise PlatformError(400, verdict["reason"])
        spec: dict[str, Any] = {
            "item": item.id,
            "entry_point": item.run.entry_point,
            "package_path": item.run.package_path,
            "title": request.title or f"train {item.id}",
            "dataset": dataset,
            "args": args,
            "init_weights": init_weights,
            "workers": request.workers,
            "platform_args": platform_args,
            "warnings": warnings,
            **resources(hardware),
        }
        return self.record(caller, "training", item, spec, "queued", request)

    async def _create_batch(self, caller: Caller, item: CatalogItem, request: BatchRequest) -> Deployment:
        """Predict over a folder of the user's storage, results to another folder, as a queued job."""
        owner, input_path, output_path = caller.name, request.input, request.output
        if self.settings.quotas[caller.role].trainings < 1:
            raise PlatformError(403, f"batch jobs need role intermediate or advanced; yours is {caller.role}")
        if not item.run.package_path or not item.run.entry_point:
            raise PlatformError(400, f"{item.id} has no local package")
        root = self.in_storage(owner, "", "input")
        src, dst = self.in_storage(owner, input_path, "input"), self.in_storage(owner, output_path, "output")
        if src == root or not src.is_dir():
            raise PlatformError(400, f"input: no folder {input_path!r} in your storage")
        if dst in (root, src) or src in dst.parents:
            raise PlatformError(400, "output: give a folder outside the input folder")
        fields = dict(request.fields)
        if request.weights:
            fields["weights"] = str(model_file(self.settings, owner, request.weights))
        spec: dict[str, Any] = {
            "item": item.id,
            "entry_point": item.run.entry_point,
            "package_path": item.run.package_path,
            "title": request.title or f"batch {item.id}",
            "input": input_path,
            "output": output_path,
            "input_abs": str(src),
            "output_abs": str(dst),
            "fields": fields,
            "file_field": request.file_field,
            "gpu": 0,
            "gpu_ids": [],
        }
        return self.record(caller, "batch", item, spec, "queued", request)

    def in_storage(self, owner: str, path: str, what: str) -> Path:
        return in_storage(self.settings, owner, path, what)

    async def progress(self, dep: Deployment) -> dict[str, int] | None:
        """A batch job's files done so far, from the ``progress n/m`` lines its runner prints."""
        if dep.kind != "batch" or not dep.backend_state:
            return None
        for line in reversed((await self.logs(dep, tail=50)).splitlines()):
            if line.startswith("progress "):
                done, total = line.split()[1].split("/")
                return {"done": int(done), "total": int(total)}
        return None

    # -- queue ----------------------------------------------------------------------------
    async def schedule(self) -> None:
        """Start queued trainings, oldest first, while their owner's quota and the GPUs allow."""
        async with self._lock:
            active = self.mine(active_only=True)
            running = [d for d in active if d.status in RUNNING_STATUSES]
            queued = sorted((d for d in active if d.status == "queued"), key=lambda d: d.created_at)
            used_gpus = deps.gpus_in_use(self.settings.db_url)
            for dep in queued:
                quota = self.settings.quotas[Caller.of(self.settings, dep.owner).role]
                mine = sum(1 for d in running if d.owner == dep.owner)
                free = [g.id for g in self.settings.gpus if g.id not in used_gpus]
                if mine >= quota.trainings:
                    self._waiting(
                        dep, f"waiting: {mine} training(s) of yours running, the quota allows {quota.trainings}"
                    )
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
            workdir = self.local.user_dir(
                dep.owner, self.settings.deployments_root / dep_id, self.settings.deployments_root
            )
            ident = self.local.identity(dep.owner)
            repo = await asyncio.to_thread(working_copy, env, workdir, ident)
            if dep.kind == "batch":
                request: dict[str, Any] = {
                    "model": spec["entry_point"],
                    "input": str(self.in_storage(dep.owner, spec["input"], "input")),
                    "output": str(self.in_storage(dep.owner, spec["output"], "output")),
                    "fields": spec["fields"],
                    "file_field": spec.get("file_field"),
                    "result": str(workdir / "result.json"),
                }
            else:
                out = self.local.user_dir(
                    dep.owner,
                    self.in_storage(dep.owner, f"models/{spec['item']}/{dep_id}", "outputs"),
                    self.settings.storage_root,
                )
                platform_args = {**spec.get("platform_args", {}), "output_dir": str(out)}
                dataset = None
                if spec.get("dataset") is not None:
                    dataset = self.in_storage(dep.owner, spec["dataset"], "dataset")
                    platform_args["dataset"] = str(dataset)
                # the repository's models/ is the output folder; its data/ shows the dataset
                await asyncio.to_thread(self._wire_folders, repo, out, dataset, ident)
                request = {
                    "model": spec["entry_point"],
                    "args": spec["args"],
                    "platform_args": platform_args,
                    "result": str(workdir / "result.json"),
                    "run_name": spec["title"],
                    "workers": spec.get("workers", 1),
                    "tags": {
                        "ai4lab.deployment": dep_id,
                        "ai4lab.owner": dep.owner,
                        "ai4lab.module": spec["item"],
                        "ai4lab.dataset": spec.get("dataset") or "",
                        "ai4lab.parent_run": spec.get("init_weights") or "",
                    },
                }
            (workdir / "request.json").write_text(json.dumps(request))
            token = await issue_process_token(self.settings.db_url, dep, dep.kind)
            env_vars = module_env(
                self.settings,
                self.local,
                dep.owner,
                env,
                workdir,
                repo=repo,
                app=spec["entry_point"],
                MLFLOW_TRACKING_URI=self.settings.public_url + "/services/mlflow",
                MLFLOW_TRACKING_TOKEN=token,
                MLFLOW_EXPERIMENT_NAME=spec["item"],
                MLFLOW_RUN_NAME=spec["title"],
            )
            script = runner(self.settings, "batch_runner.py" if dep.kind == "batch" else "train_runner.py")
            job = JobSpec(
                name=f"{dep.kind}-{dep_id}",
                command=[str(env_bin(env, "python")), str(script), str(workdir / "request.json")],
                env=env_vars,
                cwd=repo,
                log_path=self.settings.logs_dir / "deployments" / f"{dep_id}.log",
                cpu=spec.get("cpu"),
                ram_gb=(spec.get("ram_mb") or 0) / 1000,
                gpu_ids=spec["gpu_ids"],
                owner=dep.owner,
                owned_paths=[workdir],
            )
            state = await self.local.submit(self.with_secrets(job, dep))
            state["result"] = request["result"]
            outputs = spec["output"] if dep.kind == "batch" else f"storage/models/{spec['item']}/{dep_id}"
            deps.set_status(
                self.settings.db_url, dep_id, "running", "", backend_state=state, endpoints={"outputs": outputs}
            )
        except Exception as e:
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

        return CatalogItem(
            id=spec["item"],
            kind="module",
            title=spec["item"],
            summary="",
            source="training",
            run=RunInfo(package_path=spec["package_path"], entry_point=spec["entry_point"]),
        )

    # -- watch ----------------------------------------------------------------------------
    async def watch(self) -> None:
        for dep in self.mine(active_only=True):
            if dep.status != "running" or not dep.backend_state:
                continue
            status = await self.local.status(dep.backend_state)
            if not status.running:
                await self._finish(dep, status.exit_code, status.reason)
        await self.schedule()

    async def _finish(self, dep: Deployment, exit_code: int | None, ended: str = "") -> None:
        """Record how the job ended, from what it left behind.

        ``exit_code`` None: the process was no child of this API (it was started
        before a restart), so only ``result.json`` tells whether it finished.
        """
        result = job_result(self.local, dep)
        endpoints = dict(dep.endpoints)
        run_id = result.get("mlflow_run_id")
        if run_id:
            endpoints["mlflow_run_id"] = run_id
            exp = result.get("mlflow_experiment_id") or "0"
            endpoints["mlflow_run"] = f"{self.settings.public_url}/services/mlflow/#/experiments/{exp}/runs/{run_id}"
        output = result.get("output")
        if isinstance(output, dict):
            for key in ("model_path", "metrics_path"):
                if output.get(key):
                    endpoints[key] = output[key]
            endpoints["result"] = {k: v for k, v in output.items() if isinstance(v, (int, float, str))}
            failed = output.get("failed", 0) if dep.kind == "batch" else 0
            if exit_code == 0 or (exit_code is None and not failed):
                deps.set_status(self.settings.db_url, dep.id, "succeeded", "", endpoints=endpoints)
                return
            if dep.kind == "batch":
                deps.set_status(
                    self.settings.db_url,
                    dep.id,
                    "failed",
                    f"{failed} of {output.get('files')} file(s) could not be predicted; "
                    "their reasons are in the output folder",
                    endpoints=endpoints,
                )
                return
        tail = await self.local.logs(dep.backend_state, tail=15)
        # the backend's reason first when the kernel ended it ("out of memory: limit 2 GB")
        if ended.startswith("out of memory"):
            reason = ended
        elif result.get("error"):
            reason = result["error"]
        elif exit_code is None:
            reason = f"the {dep.kind} process ended without a result"
        else:
            reason = f"the {dep.kind} process died"
        deps.set_status(
            self.settings.db_url,
            dep.id,
            "failed",
            f"{reason} (exit code {exit_code}); last log lines:\n{tail}",
            endpoints=endpoints,
        )

    async def stop(self, dep: Deployment, reason: str) -> None:
        if dep.status in RUNNING_STATUSES and dep.backend_state:
            await self.local.stop(dep.backend_state)
        if dep.status in ACTIVE_STATUSES:
            deps.set_status(self.settings.db_url, dep.id, "cancelled", reason)
        await self.schedule()

    async def recover(self) -> None:
        """After a restart: a job still running is watched again; one that ended meanwhile is read back from
        its ``result.json``; one caught starting (its process may have been launched, or not) is ended and
        queued again, since it never ran."""
        for dep in self.mine(active_only=True):
            if dep.status == "starting" or (dep.status == "running" and not dep.backend_state):
                await self.local.stop_job(f"{dep.kind}-{dep.id}")
                deps.set_status(
                    self.settings.db_url,
                    dep.id,
                    "queued",
                    "queued again: the platform restarted while it started",
                    spec={**dep.spec, "gpu_ids": []},
                )
            elif dep.status == "running" and not (await self.local.status(dep.backend_state)).running:
                await self._finish(dep, None)
        await self.schedule()
