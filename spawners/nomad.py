"""NomadSpawner: each user's IDE session is a Nomad job (entry point ``nomad``).

The job is built by the pure builders (``ai4lab.nomad.render_job``, kind ``ide``)
and sent by ``ai4lab.backends.nomad.NomadBackend``; this class only does what
JupyterHub asks of a spawner. ``start`` registers the job, follows its
allocation with blocking queries (each new task event is a progress message),
takes the server URL from the allocation's network and waits until the server
answers. A job the scheduler cannot place (e.g. no free GPU of the model asked)
fails the start at once with Nomad's own reason, and is deregistered so that it
does not start later behind the user's back.

The form is the one of the local spawner (``ProfileFormSpawner``), with the GPU
models of the cluster and their free counts (from the nodes' resources).
"""

from __future__ import annotations

import math
from typing import Any

import httpx
from tornado import web
from traitlets import Bool, Dict, Float, List, Unicode, default

from ai4lab.backends.nomad import NomadBackend, NomadError, endpoints_from_allocation
from ai4lab.core.settings import GpuDevice, get_settings
from ai4lab.nomad import MAIN_TASK, NomadJobSpec, load_defaults, load_federation
from ai4lab.spawners.profiles import SessionOptions, render_form
from ai4lab.spawners.session import ProfileFormSpawner


class NomadSpawnError(RuntimeError):
    """A session Nomad could not start; JupyterHub shows ``jupyterhub_message`` to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.jupyterhub_message = message


# form IDE key -> IDE of the Nomad job defaults (config/nomad/defaults.yaml)
IDE_KINDS = {"lab": "jupyterlab", "vscode": "vscode"}


class NomadSpawner(ProfileFormSpawner):
    """Runs ``jupyterhub-singleuser`` in a container on a Nomad cluster, GPUs as Nomad devices."""

    nomad_address = Unicode(config=True, help="Nomad HTTP API address (default: platform setting nomad.address).")
    nomad_token = Unicode(
        config=True,
        help="Nomad ACL token (default: platform setting nomad.token). Needs submit-job, read-job and "
        "read-logs on the namespace, and node:read for the GPU capacity shown in the form.",
    )
    tls_ca_cert = Unicode(
        config=True, help="CA bundle verifying Nomad's TLS certificate (default: setting nomad.ca_cert)."
    )
    tls_client_cert = Unicode(
        config=True, help="Client certificate for Nomad mutual TLS (default: setting nomad.client_cert)."
    )
    tls_client_key = Unicode(config=True, help="Client key for Nomad mutual TLS (default: setting nomad.client_key).")
    tls_skip_verify = Bool(False, config=True, help="Do not verify Nomad's TLS certificate (tests only).")
    namespace = Unicode(config=True, help="Nomad namespace of the session jobs (default: setting nomad.namespace).")
    region = Unicode(config=True, help="Nomad region of the session jobs ('' : the agent's, or the federation's).")
    datacenters = List(
        Unicode(),
        config=True,
        help="Datacenters sessions may run in (empty: all the user's project may use per the federation, else any).",
    )
    node_pool = Unicode("", config=True, help="Node pool of the session jobs ('' : per federation, else default).")
    project = Unicode(
        "",
        config=True,
        help="Project (VO) of the sessions: Meta.project and federation access ('' : the user's VO, "
        "else setting nomad.default_project).",
    )
    images = Dict(
        config=True,
        help="Container image per IDE key of the form, e.g. {'lab': 'quay.io/jupyter/pytorch-notebook:latest'} "
        "(default: the IDE images of config/nomad/defaults.yaml). The image must contain jupyterhub-singleuser.",
    )
    gpu_models = List(
        Unicode(), config=True, help="GPU models offered in the form (empty: every model the cluster's nodes have)."
    )
    purge = Bool(config=True, help="Purge the job when the session stops (False keeps it as a dead job to inspect).")
    defaults_file = Unicode(
        "", config=True, help="Nomad job defaults file ('' : setting nomad.defaults_file or the bundled one)."
    )
    federation_file = Unicode(
        "", config=True, help="Federation file: datacenters per project ('' : setting nomad.federation_file)."
    )
    watch_wait = Float(30, config=True, help="Seconds a Nomad blocking query waits for a change before asking again.")
    ready_timeout = Float(300, config=True, help="Seconds to wait for the server to answer once its task runs.")

    # -- defaults from the platform settings --------------------------------------------
    @default("nomad_address")
    def _default_address(self) -> str:
        return get_settings().nomad.address

    @default("nomad_token")
    def _default_token(self) -> str:
        return get_settings().nomad.token

    @default("tls_ca_cert")
    def _default_ca(self) -> str:
        return get_settings().nomad.ca_cert

    @default("tls_client_cert")
    def _default_client_cert(self) -> str:
        return get_settings().nomad.client_cert

    @default("tls_client_key")
    def _default_client_key(self) -> str:
        return get_settings().nomad.client_key

    @default("namespace")
    def _default_namespace(self) -> str:
        return get_settings().nomad.namespace

    @default("region")
    def _default_region(self) -> str:
        return get_settings().nomad.region

    @default("purge")
    def _default_purge(self) -> bool:
        return get_settings().nomad.purge

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return ["jupyterhub-singleuser"]

    @property
    def backend(self) -> NomadBackend:
        if getattr(self, "_backend", None) is None:
            nomad = get_settings().nomad
            verify: bool | str = False if self.tls_skip_verify else (self.tls_ca_cert or True)
            cert = (self.tls_client_cert, self.tls_client_key) if self.tls_client_cert else None
            federation = self.federation_file or (str(nomad.federation_file) if nomad.federation_file else "")
            self._backend = NomadBackend(
                self.nomad_address,
                token=self.nomad_token or None,
                namespace=self.namespace,
                region=self.region or None,
                purge=self.purge,
                verify=verify,
                cert=cert,
                defaults=load_defaults(self.defaults_file or nomad.defaults_file),
                federation=load_federation(federation) if federation else None,
            )
        return self._backend

    def _project(self) -> str:
        return self.project or self._account().vo or get_settings().nomad.default_project

    # -- the form: the shared one, with the cluster's GPUs -------------------------------
    async def gpu_offer(self) -> dict[str, dict[str, int]]:
        """{model: {free, total}} over the datacenters this user's sessions may use (503 if Nomad fails)."""
        try:
            cap = await self.backend.capacity()
        except (NomadError, httpx.HTTPError) as e:
            msg = f"cannot read the cluster's capacity from Nomad at {self.nomad_address}: {e}"
            raise web.HTTPError(503, msg, reason=msg[:200]) from None
        allowed: set[str] | None = set(self.datacenters) or None
        if self.backend.federation is not None:
            mine = {d.name for d in self.backend.federation.datacenters_for(self._project())}
            allowed = mine & allowed if allowed else mine
        offer: dict[str, dict[str, int]] = {}
        for dc, info in cap["datacenters"].items():
            if allowed is not None and dc not in allowed:
                continue
            for model, g in info["gpus"].items():
                if self.gpu_models and model not in self.gpu_models:
                    continue
                o = offer.setdefault(model, {"free": 0, "total": 0, "max_free_on_one_node": 0})
                o["free"] += g["free"]
                o["total"] += g["total"]
                o["max_free_on_one_node"] = max(o["max_free_on_one_node"], g["max_free_on_one_node"])
        return offer

    async def _render_options_form(self, spawner: Any) -> str:
        role, quota = self._role_and_quota()
        offer = await self.gpu_offer()
        gpus = [GpuDevice(id=f"{m}-{i}", model=m) for m, o in offer.items() for i in range(o["total"])]
        return render_form(
            quota=quota,
            role=role,
            profiles=self.profile_list,
            gpus=gpus,
            free_gpus=sum(o["free"] for o in offer.values()),
            ides=self.ides,
            gpu_models=offer,
            environments=self.environments,
            built=list(self.environments),  # images: nothing to build at the first start
        )

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return {k: v[0] if v else "" for k, v in formdata.items()}  # checked in apply_user_options

    async def check_options(self, raw: dict[str, Any]) -> SessionOptions:
        offer = await self.gpu_offer()
        # one job's GPUs come from one node: what counts is the most free on one node
        by_model = {m: o["max_free_on_one_node"] for m, o in offer.items()}
        return self.validate(raw, free_gpus=max(by_model.values(), default=0), free_by_model=by_model)

    # -- the job -------------------------------------------------------------------------
    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        # the server binds the port Nomad gives the task (Nomad interpolates ${...} in Env and args)
        base = self.server.base_url if self.server else "/"
        env["JUPYTERHUB_SERVICE_URL"] = f"http://0.0.0.0:${{NOMAD_PORT_ide}}{base}"
        options = SessionOptions(**self.user_options) if self.user_options else None
        public = get_settings().public_url
        env |= self.session_env(options, public + "/services/mlflow", public + "/services/ai4lab")
        return env

    def image_for(self, options: SessionOptions) -> str | None:
        """The chosen environment's image (its GPU image when the session has GPUs), else ``images`` per IDE."""
        env = self.environments.get(options.environment)
        if env is not None and (image := (env.gpu_image if options.gpu else "") or env.image):
            return image
        return self.images.get(options.ide)

    def job_spec(self, options: SessionOptions) -> NomadJobSpec:
        ide = IDE_KINDS.get(options.ide, options.ide)
        return NomadJobSpec(
            kind="ide",
            name=self.name or "default",
            owner=self.user.name,
            project=self._project(),
            namespace=self.namespace,
            region=self.region or None,
            datacenters=list(self.datacenters),
            node_pool=self.node_pool or None,
            image=self.image_for(options),
            ide=ide,
            # NOMAD_PORT_ide: the port inside the task (the container side of the dynamic port)
            command=[*self.cmd, "--ip=0.0.0.0", "--port=${NOMAD_PORT_ide}", *self.get_args()],
            env=self.get_env(),
            cpu_cores=max(1, math.ceil(options.cpu)),
            memory_mb=int(options.ram_gb * 1024),
            gpu_count=options.gpu,
            gpu_model=options.gpu_model or None,
            meta={"hub_user": self.user.name, "hub_server": self.name or ""},
        )

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> str:
        self._reset_events()
        options = SessionOptions(**self.user_options) if self.user_options else await self.check_options({})
        self.user_options = options.dump()
        try:
            spec = self.job_spec(options)
        except ValueError as e:
            raise web.HTTPError(400, str(e), reason=str(e)) from None
        self.record_start({**options.dump(), "backend": "nomad"}, backend="nomad", vo=spec.project)
        try:
            self.job_state = await self.backend.submit(spec)
        except (NomadError, ValueError, httpx.HTTPError) as e:
            self.record("failed", f"Nomad refused the session job: {e}")
            raise
        self.record("starting", backend_state=self.job_state)
        self._event(10, f"Nomad job {self.job_state['job_id']} registered (evaluation {self.job_state['eval_id'][:8]})")
        try:
            url = await self._follow_allocation()
            await self.wait_answering(url, request_timeout=5)
        except BaseException as e:
            await self.backend.stop(self.job_state)
            self.record("failed", str(e) or type(e).__name__)
            raise
        self.record(
            "running",
            endpoints={"url": f"{self.user.url}{self.name + '/' if self.name else ''}", "server": url},
        )
        self._event(95, f"Server answering at {url}")
        return url

    async def _follow_allocation(self) -> str:
        """Progress from the allocation's task events until its main task runs; the server URL."""
        seen: dict[str, int] = {}
        progress = 20
        async for alloc in self.backend.watch(self.job_state, wait=self.watch_wait):
            if alloc["ID"] is None:
                raise NomadSpawnError(f"Nomad cannot place this session: {alloc['unplaced']}")
            for task, ts in sorted((alloc.get("TaskStates") or {}).items()):
                events = ts.get("Events") or []
                for ev in events[seen.get(task, 0) :]:
                    progress = min(progress + 8, 85)
                    text = ev.get("DisplayMessage") or ev.get("Message") or ""
                    self._event(progress, f"{task}: {ev.get('Type', 'event')}" + (f": {text}" if text else ""))
                seen[task] = len(events)
            client = alloc.get("ClientStatus")
            main = (alloc.get("TaskStates") or {}).get(MAIN_TASK) or {}
            if client == "running" and main.get("State") == "running":
                url = endpoints_from_allocation(alloc).get("ide")
                if not url:
                    raise NomadSpawnError(f"allocation {alloc['ID'][:8]} runs but has no 'ide' port")
                self._event(88, f"Allocation {alloc['ID'][:8]} running on {alloc.get('NodeName', '?')}")
                return url
            if client in ("failed", "lost", "complete"):
                status = await self.backend.status(self.job_state)
                raise NomadSpawnError(f"the session's allocation ended before it answered: {status.reason}")
        raise NomadSpawnError("the session's job disappeared from Nomad")

    async def poll(self) -> int | None:
        if not self.job_state:
            return 0
        try:
            status = await self.backend.status(self.job_state)
        except (NomadError, httpx.HTTPError):
            return None  # Nomad unreachable for a moment is not a dead session
        return None if status.running else self.record_ended(status)

    async def stop(self, now: bool = False) -> None:
        if self.job_state:
            await self.backend.stop({**self.job_state, "purge": self.purge})
        self.record_stopped()
        self.job_state = {}
