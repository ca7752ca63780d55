"""What every ai4lab spawner shares: the profile form, quotas per role, the session count and progress events.

The local and the Nomad spawner differ only in where the session runs and where
free GPUs are counted; the form, its validation (``profiles.validate_options``)
and the ``ide`` deployment record are the same, so a user sees one form.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from inspect import isawaitable
from typing import Any

import httpx
from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Dict, List, Unicode, default

from ai4lab.backends.base import JobStatus
from ai4lab.core import accounts, user_secrets
from ai4lab.core import deployments as deps
from ai4lab.core.errors import PlatformError
from ai4lab.core.settings import Quota, SessionEnvironment, get_settings
from ai4lab.core.statuses import ACTIVE_STATUSES, RUNNING_STATUSES
from ai4lab.spawners.profiles import DEFAULT_PROFILES, IDES, SessionOptions, validate_options


class ProfileFormSpawner(Spawner):
    """Base of ai4lab's spawners: profile form traits, checks and progress events (no start/stop)."""

    db_url = Unicode(config=True, help="Platform database URL (default: from the platform settings).")
    profile_list = List(
        Dict(),
        config=True,
        help="Profiles offered in the form, kubespawner-style: "
        "[{slug, display_name, description, default, options: {cpu, ram_gb, gpu, ide}}].",
    )
    ides = Dict(config=True, help="IDEs offered: {key: {display_name, default_url}}.")
    quotas = Dict(config=True, help="Per-role quotas {role: {cpu, ram_gb, gpu, sessions}}.")

    # jupyterhub's Dict trait (jupyterhub has no type hints): the options of the session being started
    user_options: dict[str, Any]

    #: Whether sessions of this spawner can be given the user's secrets (``secrets`` in the form): only where
    #: the values reach the session's processes alone (not a cluster's job description).
    gives_secrets = False

    # kept across hub restarts (get_state/load_state): the backend's job and the deployment record
    job_state = Dict()
    deployment_id = Unicode("")

    @default("db_url")
    def _default_db_url(self) -> str:
        return get_settings().db_url

    @default("profile_list")
    def _default_profiles(self) -> list[dict[str, Any]]:
        return DEFAULT_PROFILES

    @default("ides")
    def _default_ides(self) -> dict[str, dict[str, str]]:
        return IDES

    @default("quotas")
    def _default_quotas(self) -> dict[str, Any]:
        return {k: v.model_dump() for k, v in get_settings().quotas.items()}

    def _account(self) -> accounts.User:
        return accounts.get_user(self.db_url, self.user.name) or accounts.ensure_user(
            self.db_url, self.user.name, admin=self.user.admin
        )

    def _role_and_quota(self) -> tuple[str, Quota]:
        role = self._account().role
        return role, Quota(**self.quotas[role])

    @property
    def environments(self) -> dict[str, SessionEnvironment]:
        """The session environments offered in the form (setting ``session_environments``)."""
        return get_settings().session_environments

    def secret_names(self) -> list[str] | None:
        """The user's secrets a session may be given; None where this spawner gives none."""
        return user_secrets.names(self.db_url, self.user.name) if self.gives_secrets else None

    def secret_values(self, options: SessionOptions) -> dict[str, str]:
        """The values of the secrets the session asked for, read now; a deleted one stops the start (400)."""
        try:
            return user_secrets.values(self.db_url, get_settings().state, self.user.name, options.secrets)
        except PlatformError as e:
            raise web.HTTPError(400, e.message, reason=e.message) from None

    def validate(
        self, raw: dict[str, Any], free_gpus: int, free_by_model: dict[str, int] | None = None
    ) -> SessionOptions:
        """The user's options checked against profiles, quota, free GPUs and running sessions."""
        role, quota = self._role_and_quota()
        options = validate_options(
            raw,
            quota=quota,
            role=role,
            profiles=self.profile_list,
            free_gpus=free_gpus,
            ides=self.ides,
            free_by_model=free_by_model,
            secret_names=self.secret_names(),
            environments=list(self.environments),
        )
        running = [
            d
            for d in deps.list_deployments(self.db_url, owner=self.user.name, kind="ide", active_only=True)
            if d.id != self.deployment_id
        ]
        if len(running) >= quota.sessions:
            raise ValueError(f"{len(running)} session(s) already running: the {role} quota allows {quota.sessions}")
        return options

    # -- the form: each spawner renders it and checks options with what it knows is free --
    @default("options_form")
    def _default_options_form(self) -> Any:
        return self._render_options_form

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        return ProfileFormSpawner._apply_options

    async def _render_options_form(self, spawner: Spawner) -> str:
        raise NotImplementedError

    def check_options(self, raw: dict[str, Any]) -> SessionOptions | Awaitable[SessionOptions]:
        raise NotImplementedError

    @staticmethod
    async def _apply_options(spawner: ProfileFormSpawner, user_options: dict[str, Any]) -> None:
        # Runs for form and REST API starts alike: a bad value is a 400 with its reason.
        try:
            checked = spawner.check_options(user_options or {})
            options = await checked if isawaitable(checked) else checked
        except ValueError as e:
            raise web.HTTPError(400, str(e), reason=str(e)) from None
        spawner.user_options = options.dump()
        spawner.default_url = spawner.ides[options.ide].get("default_url", "/lab")
        spawner.options_applied(options)

    def options_applied(self, options: SessionOptions) -> None:
        """Called with the checked options before ``start`` (and before JupyterHub reads ``start_timeout``)."""

    # -- what subclasses implement (JupyterHub checks that these are redefined) ----------
    async def start(self) -> Any:
        raise NotImplementedError

    async def stop(self, now: bool = False) -> None:
        raise NotImplementedError

    async def poll(self) -> int | None:
        raise NotImplementedError

    # -- state kept by the hub -----------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.job_state:
            state["job"] = self.job_state
        if self.deployment_id:
            state["deployment_id"] = self.deployment_id
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.job_state = state.get("job", {})
        self.deployment_id = state.get("deployment_id", "")

    def clear_state(self) -> None:
        super().clear_state()
        self.job_state = {}
        # keep deployment_id: a restart of this server updates the same record

    # -- what every session is told, wherever it runs ----------------------------------
    def session_env(self, options: SessionOptions | None, mlflow_url: str, api_url: str) -> dict[str, str]:
        """MLflow and the platform API, both with the session's own token, and the user's choice (AI4LAB_*)."""
        env = {
            "MLFLOW_TRACKING_URI": mlflow_url,
            "MLFLOW_TRACKING_TOKEN": self.api_token,
            "AI4LAB_API_URL": api_url,
            "AI4LAB_API_TOKEN": self.api_token,
        }
        if options:
            env |= {
                "AI4LAB_IDE": options.ide,
                "AI4LAB_PROFILE": options.profile,
                "AI4LAB_ENVIRONMENT": options.environment,
                "AI4LAB_CPU": f"{options.cpu:g}",
                "AI4LAB_RAM_GB": f"{options.ram_gb:g}",
                "AI4LAB_GPU": str(options.gpu),
                "OMP_NUM_THREADS": str(max(1, int(options.cpu))),
            }
        return env

    # -- the session's deployment record (one per named server, kept across its restarts) ------
    def record_start(self, spec: dict[str, Any], backend: str = "local", vo: str | None = None) -> None:
        """The record says ``starting``, with what was asked; made on the server's first start."""
        if self.deployment_id and deps.get(self.db_url, self.deployment_id):
            deps.set_status(self.db_url, self.deployment_id, "starting", spec=spec)
            return
        dep = deps.create(
            self.db_url,
            owner=self.user.name,
            kind="ide",
            name=self.name or "default",
            spec=spec,
            backend=backend,
            status="starting",
            vo=vo,
        )
        self.deployment_id = dep.id

    def record(self, status: str, reason: str = "", **fields: Any) -> None:
        if self.deployment_id:
            deps.set_status(self.db_url, self.deployment_id, status, reason, **fields)

    def record_ended(self, status: JobStatus) -> int:
        """``poll`` found the job ended: a session that was up failed (with the backend's reason); its exit code."""
        if self.deployment_id:
            dep = deps.get(self.db_url, self.deployment_id)
            if dep is not None and dep.status in RUNNING_STATUSES:
                deps.set_status(self.db_url, self.deployment_id, "failed", status.reason)
        return status.exit_code if status.exit_code is not None else 1

    def record_stopped(self, reason: str = "stopped") -> None:
        """``stop``: an active record is stopped; a failure (out of memory) keeps its reason."""
        if self.deployment_id:
            dep = deps.get(self.db_url, self.deployment_id)
            if dep is not None and dep.status in ACTIVE_STATUSES:
                deps.set_status(self.db_url, self.deployment_id, "stopped", reason)

    # -- waiting for the server ---------------------------------------------------------------
    async def wait_answering(self, server_url: str, request_timeout: float = 2) -> None:
        """Until the server's API (``<server_url><base_url>api``) answers below 500.

        A job that ends first raises ``RuntimeError`` with the backend's reason and its last
        log lines; no answer within ``ready_timeout`` raises ``TimeoutError``. The caller stops
        the job and records the failure.
        """
        probe = f"{server_url.rstrip('/')}{self.server.base_url if self.server else '/'}api"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        pause = 0.1
        async with httpx.AsyncClient(timeout=request_timeout) as client:
            while loop.time() < deadline:
                try:
                    if (await client.get(probe)).status_code < 500:
                        return
                except httpx.TransportError:
                    pass
                status = await self.backend.status(self.job_state)
                if not status.running:
                    tail = await self.backend.logs(self.job_state, tail=15)
                    raise RuntimeError(f"session {status.reason}; last log lines:\n{tail}")
                # backing off to one probe a second: 40 sessions starting at once on 2 cores take a
                # minute, and a probe every 0.3 s each was CPU taken from the sessions and the hub
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 1.5)
        raise TimeoutError(f"the session did not answer at {probe} within {self.ready_timeout:g}s")

    # -- progress: events pushed by start(), read by progress() ---------------------
    def _reset_events(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._events_changed = asyncio.Event()

    def _event(self, progress: int, message: str) -> None:
        self._events.append({"progress": progress, "message": message})
        self._events_changed.set()

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        seen = 0
        while True:
            events = getattr(self, "_events", [])
            while seen < len(events):
                yield events[seen]
                seen += 1
            if events and events[-1]["progress"] >= 100:
                return
            changed = getattr(self, "_events_changed", None)
            if changed is None:
                await asyncio.sleep(0.2)
                continue
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), timeout=1)
            except TimeoutError:
                pass
