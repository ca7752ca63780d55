"""Local session spawner: each user's IDE is a process tree on this machine.

The embedded default of ai4lab. Sessions are started through the platform's
local backend and recorded as ``ide`` deployments, so that the API, the admin
view and the restart logic see them like any other deployment.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import Spawner
from jupyterhub.utils import random_port
from tornado import web
from traitlets import Any as AnyTrait
from traitlets import Dict, Float, Integer, List, Unicode, default

from ai4lab.backends.local import LocalBackend
from ai4lab.core import deployments as deps
from ai4lab.core.envs import EnvBuildError
from ai4lab.core.isolation import give, private_dir
from ai4lab.core.mounts import ensure_mount
from ai4lab.core.runtime import package_tool_env
from ai4lab.core.session_envs import SessionEnvBuild, environment_error
from ai4lab.core.settings import get_settings
from ai4lab.core.timing import PhaseTimer
from ai4lab.spawners.profiles import SessionOptions, render_form
from ai4lab.spawners.session import ProfileFormSpawner
from ai4lab.spawners.start_slots import StartSlots, default_slots

_backend = LocalBackend()
_gpu_lock = asyncio.Lock()
_start_slots: StartSlots | None = None

CODE_SERVER_CONFIG = """\
auth: none
disable-telemetry: true
disable-update-check: true
disable-workspace-trust: true
"""


class LocalSessionSpawner(ProfileFormSpawner):
    """Starts ``jupyterhub-singleuser`` in the user's workspace with storage and MLflow wired in."""

    gives_secrets = True  # through the local backend: the session's environment, or its private files

    workspace_root = Unicode(config=True, help="Folder holding one workspace folder per user.")
    storage_root = Unicode(
        config=True, help="Folder holding one storage folder per user; linked as storage/ in the session."
    )
    tools_bin = Unicode(config=True, help="Folder with code-server and other tools, put first on the session's PATH.")
    mlflow_url = Unicode(config=True, help="MLFLOW_TRACKING_URI given to sessions.")
    api_url = Unicode(config=True, help="AI4LAB_API_URL given to sessions (the platform API).")
    gpu_inventory = List(Dict(), config=True, help="Local GPUs [{id, model}], handed out through CUDA_VISIBLE_DEVICES.")
    ready_timeout = Float(
        config=True,
        help="Seconds to wait for the session to answer HTTP (default: start_timeout, so that a session "
        "slowed by many others starting beside it is not given up before JupyterHub would).",
    )
    backend = AnyTrait(help="The local backend running the process (shared by all sessions).")
    concurrent_starts = Integer(
        config=True,
        help="Sessions starting at once on this machine; more wait their turn, first come first served "
        "(default: two per core). A start-up is CPU-bound: a few at a time, the first users are in "
        "after seconds instead of all of them after the last.",
    )
    start_slot_hold_max = Float(
        30,
        config=True,
        help="Seconds a starting session may hold its slot before the next one starts anyway "
        "(a session that hangs does not stall the queue).",
    )

    #: the session environment's folder (None: Base, the session environment itself); set by start()
    environment_dir: Path | None = None

    @default("backend")
    def _default_backend(self) -> LocalBackend:
        return _backend

    @default("concurrent_starts")
    def _default_concurrent_starts(self) -> int:
        return default_slots()

    def start_slots(self) -> StartSlots:
        """The machine's start slots, shared by every session of this hub (made on the first start)."""
        global _start_slots
        if _start_slots is None:
            _start_slots = StartSlots(self.concurrent_starts, self.start_slot_hold_max)
        return _start_slots

    @default("ready_timeout")
    def _default_ready_timeout(self) -> float:
        return float(self.start_timeout)

    @default("workspace_root")
    def _default_workspace_root(self) -> str:
        return str(get_settings().workspaces_root)

    @default("storage_root")
    def _default_storage_root(self) -> str:
        return str(get_settings().storage_root)

    @default("tools_bin")
    def _default_tools_bin(self) -> str:
        return str(get_settings().tools_bin)

    @default("mlflow_url")
    def _default_mlflow_url(self) -> str:
        return get_settings().public_url + "/services/mlflow"

    @default("api_url")
    def _default_api_url(self) -> str:
        return get_settings().public_url + "/services/ai4lab"

    @default("gpu_inventory")
    def _default_gpus(self) -> list[dict[str, str]]:
        return [g.model_dump() for g in get_settings().gpus]

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return [str(self.session_bin / "jupyterhub-singleuser")]

    @property
    def session_bin(self) -> Path:
        """bin/ of the environment sessions run from: the runtime's session env when isolating."""
        env = get_settings().session_env
        # resolved: a session keeps the version it started with when the installer links a newer one
        return Path(env).resolve() / "bin" if env else Path(sys.executable).parent

    # -- who is asking -------------------------------------------------------
    @property
    def workspace(self) -> Path:
        return Path(self.workspace_root) / self.user.name

    @property
    def storage(self) -> Path:
        return Path(self.storage_root) / self.user.name

    def _free_gpus(self) -> list[dict[str, str]]:
        used = deps.gpus_in_use(self.db_url)
        mine = set(self.job_state.get("gpu_ids", []))
        return [g for g in self.gpu_inventory if g["id"] not in used or g["id"] in mine]

    def _gpu_models(self) -> list[Any]:
        from ai4lab.core.settings import GpuDevice

        return [GpuDevice(**g) for g in self.gpu_inventory]

    # -- the form --------------------------------------------------------------
    async def _render_options_form(self, spawner: Spawner) -> str:
        role, quota = self._role_and_quota()
        return render_form(
            quota=quota,
            role=role,
            profiles=self.profile_list,
            gpus=self._gpu_models(),
            free_gpus=len(self._free_gpus()),
            ides=self.ides,
            limits_note="" if self.backend.limits.enforced else self.backend.limits.description,
            secret_names=self.secret_names(),
            environments=self.environments,
            built=[k for k in self.environments if self._environment_build(k).path() is not None],
        )

    def _environment_build(self, key: str) -> SessionEnvBuild:
        return SessionEnvBuild(get_settings(), key, self.environments[key])

    def options_applied(self, options: SessionOptions) -> None:
        """A session whose environment is built first may take ``env_build_timeout`` longer to start."""
        if not hasattr(self, "_start_timeout_asked"):
            self._start_timeout_asked = int(getattr(self, "start_timeout", 60))  # untyped traitlet
        build = self._environment_build(options.environment)
        extra = get_settings().env_build_timeout if build.needed and build.path() is None else 0
        self.start_timeout = int(self._start_timeout_asked + extra)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        # every check box of "secrets" counts; other fields have one value
        raw = {k: v if k == "secrets" else v[0] if v else "" for k, v in formdata.items()}
        return self.check_options(raw).dump()

    def check_options(self, raw: dict[str, Any]) -> SessionOptions:
        return self.validate(raw, free_gpus=len(self._free_gpus()))

    # -- lifecycle ---------------------------------------------------------------
    def _prepare_workspace(self, options: SessionOptions) -> None:
        """Workspace and storage private to the user's system account (mode 0700, owned by it)."""
        ident = self.backend.identity(self.user.name)
        private_dir(self.workspace, ident, Path(self.workspace_root))
        private_dir(self.storage, ident, Path(self.storage_root))
        ensure_mount(get_settings(), self.user.name, ident)  # S3 or WebDAV, mounted where storage/ points
        link = self.workspace / "storage"
        if link.is_symlink() and link.resolve() != self.storage.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(self.storage, target_is_directory=True)
            give(link, ident)
        news = (
            self.workspace
            / ".jupyter/lab/user-settings/@jupyterlab/apputils-extension"
            / "notification.jupyterlab-settings"
        )
        if not news.exists():
            # the platform may be offline: do not ask every user about fetching Jupyter news
            private_dir(news.parent, ident, self.workspace)
            news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
            give(news, ident, 0o600)
        if options.ide == "vscode":
            conf = self.workspace / ".config" / "code-server" / "config.yaml"
            private_dir(conf.parent, ident, self.workspace)
            conf.write_text(CODE_SERVER_CONFIG)
            give(conf, ident, 0o600)
            self._vscode_interpreter(ident)

    def _vscode_interpreter(self, ident: Any) -> None:
        """VS Code's Python interpreter is the session environment's, in code-server's machine settings.

        Machine settings, not the user's settings.json: they are the platform's to rewrite at every
        start (another environment chosen), and a user's own setting still wins.
        """
        python = (self.environment_dir / "bin" if self.environment_dir else self.session_bin) / "python"
        machine = self.workspace / ".local" / "share" / "code-server" / "Machine" / "settings.json"
        for folder in reversed(machine.parents[:4]):
            private_dir(folder, ident, self.workspace)
        settings = {"python.defaultInterpreterPath": str(python), "python.terminal.activateEnvironment": False}
        machine.write_text(json.dumps(settings, indent=2) + "\n")
        give(machine, ident, 0o600)

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        options = SessionOptions(**self.user_options) if self.user_options else None
        ws = str(self.workspace)
        path = [self.tools_bin, str(self.session_bin), "/usr/local/bin", "/usr/bin", "/bin"]
        if self.environment_dir is not None:
            # its python and pip first in terminals; its kernel spec (python3) first for Jupyter
            path.insert(0, str(self.environment_dir / "bin"))
            env["JUPYTER_PATH"] = str(self.environment_dir / "share" / "jupyter")
            env["AI4LAB_ENVIRONMENT_PREFIX"] = str(self.environment_dir)
        env.update(package_tool_env())  # pip / uv in the session reach the index as the machine does
        env.update(self.session_env(options, self.mlflow_url, self.api_url))
        env.update(
            {
                "HOME": ws,
                "USER": self.user.name,
                "SHELL": "/bin/bash",
                "PATH": os.pathsep.join(path),
                "AI4LAB_STORAGE": str(self.workspace / "storage"),
                "CODE_WORKINGDIR": ws,
                "XDG_CONFIG_HOME": os.path.join(ws, ".config"),
                "XDG_DATA_HOME": os.path.join(ws, ".local", "share"),
            }
        )
        if options:
            env.update(
                {
                    # jupyter-resource-usage shows usage against these in Lab's status bar
                    "MEM_LIMIT": str(int(options.ram_gb * 2**30)),
                    "CPU_LIMIT": f"{options.cpu:g}",
                }
            )
        return env

    def get_args(self) -> list[str]:
        args = [
            *super().get_args(),
            "--ResourceUseDisplay.track_cpu_percent=True",
            # not a login shell (Jupyter's default): /etc/profile would reset PATH, and a terminal's
            # python, pip and ai4lab would no longer be the session environment's (as docker-stacks do)
            '--ServerApp.terminado_settings={"shell_command": ["/bin/bash"]}',
        ]
        if os.getuid() == 0 and not self.backend.accounts.enabled:
            args.append("--allow-root")  # single-user mode run by root: the session is root's
        return args

    async def start(self) -> tuple[str, int]:
        self._reset_events()
        phases = PhaseTimer()
        options = SessionOptions(**self.user_options) if self.user_options else self.check_options({})
        self.user_options = options.dump()
        self.environment_dir = await self._environment(options)
        phases.lap("environment")
        await asyncio.to_thread(self._prepare_workspace, options)
        phases.lap("workspace")
        self.notebook_dir = str(self.workspace)
        self._event(
            20,
            f"Workspace ready with storage/ ({options.ide}, {options.cpu:g} CPU, "
            f"{options.ram_gb:g} GB, {options.gpu} GPU)",
        )
        async with _gpu_lock:
            gpu_ids = [g["id"] for g in self._free_gpus()][: options.gpu]
            if len(gpu_ids) < options.gpu:
                raise web.HTTPError(400, f"{options.gpu} GPU(s) asked but only {len(gpu_ids)} free")
            self.record_start({**options.dump(), "gpu_ids": gpu_ids})
        phases.lap("record")

        def waiting(ahead: int) -> None:
            self._event(30, f"Waiting for a start slot: {ahead} session(s) ahead, {slots.slots} starting")

        slots = self.start_slots()
        async with slots.slot(on_wait=waiting):
            phases.lap("queue")
            await self._launch(options, gpu_ids, phases)
        phases.lap("answer")
        url = f"{self.user.url}{self.name}/" if self.name else self.user.url
        self.record("running", endpoints={"url": url.rstrip("/") + "/"})
        self._event(90, "Server answering")
        # where a slow start goes (issue 17): the platform's own steps against the server's start-up
        self.log.info("session %s of %s answering: %s", self.name or "default", self.user.name, phases)
        return (self.ip or "127.0.0.1", self.port)

    async def _environment(self, options: SessionOptions) -> Path | None:
        """The chosen session environment, built now if this is its first use (progress on the spawn page)."""
        if options.environment not in self.environments:
            raise web.HTTPError(400, f"the environment {options.environment!r} is not offered any more")
        build = self._environment_build(options.environment)
        if not build.needed:
            return None
        loop = asyncio.get_running_loop()

        def said(message: str) -> None:
            loop.call_soon_threadsafe(self._event, 10, message)

        try:
            return await asyncio.to_thread(build.ensure, said)
        except EnvBuildError as e:
            self.log.error("session environment %s: %s", options.environment, e)
            raise RuntimeError(environment_error(e)) from None

    async def _launch(self, options: SessionOptions, gpu_ids: list[str], phases: PhaseTimer) -> None:
        """Start the process and wait until it answers; a failure stops it and is recorded."""
        self.port = random_port()
        from ai4lab.backends.base import JobSpec

        job = JobSpec(
            name=f"session-{self.user.name}-{self.name or 'default'}",
            command=[*self.cmd, *self.get_args()],
            env=self.get_env(),
            cwd=self.workspace,
            log_path=Path(get_settings().logs_dir) / "sessions" / f"{self.deployment_id}.log",
            cpu=options.cpu,
            ram_gb=options.ram_gb,
            gpu_ids=gpu_ids,
            owner=self.user.name,
            secrets=self.secret_values(options),
            secrets_as=options.secrets_as,
        )
        self.job_state = await self.backend.submit(job)
        self.job_state["gpu_ids"] = gpu_ids
        self.record("starting", backend_state=self.job_state)
        phases.lap("launch")
        self._event(50, f"Process started (pid {self.job_state['pid']})")
        try:
            await self.wait_answering(f"http://127.0.0.1:{self.port}")
        except BaseException as e:
            await self.backend.stop(self.job_state)
            self.record("failed", str(e) or type(e).__name__)
            raise

    async def poll(self) -> int | None:
        if not self.job_state:
            return 0
        status = await self.backend.status(self.job_state)
        return None if status.running else self.record_ended(status)

    async def stop(self, now: bool = False) -> None:
        if self.job_state:
            await self.backend.stop(self.job_state, timeout=0 if now else 10)
        shutting_down = (get_settings().state / "shutting-down").exists()
        self.record_stopped(deps.SHUTDOWN_REASON if shutting_down else "stopped")
        self.job_state = {}
