"""Platform settings shared by the CLI, the hub config, the services and the spawner.

One pydantic-settings model so that every process of the platform (hub, API
service, MLflow gateway, CLI) resolves the same values: environment variables
``AI4LAB_*`` win over the YAML file named by ``AI4LAB_CONFIG`` (default
``./ai4lab.yaml`` when present), which wins over the defaults below.
"""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from ai4lab.core.remote_storage import StorageBackend
from ai4lab.core.runtime import default_runtime_dir, default_user_python

Role = Literal["basic", "intermediate", "advanced"]
ROLES: tuple[str, ...] = ("basic", "intermediate", "advanced")


class Quota(BaseModel):
    """Upper bounds of what one user of a role may ask for one session or deployment."""

    cpu: float = Field(description="CPU cores")
    ram_gb: float = Field(description="memory in GB")
    gpu: int = Field(description="GPUs")
    sessions: int = Field(default=2, description="IDE sessions running at once")
    trainings: int = Field(default=1, description="trainings running at once (more wait in the queue)")
    storage_gb: float = Field(
        default=10, ge=0, description="platform storage in GB (uploads, dataset imports and new jobs stop at it)"
    )

    @property
    def storage_bytes(self) -> int:
        return int(self.storage_gb * 1e9)


class NomadSettings(BaseModel):
    """How to reach a Nomad cluster (the ``nomad`` backend and the ``nomad`` spawner)."""

    address: str = Field(default="http://127.0.0.1:4646", description="Nomad HTTP API address (NOMAD_ADDR).")
    token: str = Field(default="", description="Nomad ACL token (NOMAD_TOKEN); see the README for the policy it needs.")
    namespace: str = Field(default="default", description="Nomad namespace of ai4lab's jobs.")
    region: str = Field(default="", description="Nomad region ('' : the agent's own, or the federation's).")
    ca_cert: str = Field(default="", description="CA bundle verifying Nomad's TLS certificate ('' : system CAs).")
    client_cert: str = Field(default="", description="Client certificate for mutual TLS (with client_key).")
    client_key: str = Field(default="", description="Client key for mutual TLS.")
    skip_verify: bool = Field(default=False, description="Do not verify Nomad's TLS certificate (tests only).")
    purge: bool = Field(default=True, description="Purge jobs when stopped (False: keep them as dead jobs).")
    defaults_file: Path | None = Field(default=None, description="Job defaults (default: config/nomad/defaults.yaml).")
    federation_file: Path | None = Field(
        default=None, description="Which projects (VOs) may use which datacenters; none: no restriction."
    )
    default_project: str = Field(default="default", description="Project of users without a VO.")


class OidcSettings(BaseModel):
    """OIDC login (``authenticator: ai4lab-oidc``): the provider, and how its claims become VOs and roles.

    Why claims: on an e-infrastructure the provider (EGI Check-in, Keycloak) already knows
    who belongs to which VO and with which standing, as AI4OS reads it from
    ``eduperson_entitlement``; copying that into local accounts by hand would drift.
    """

    issuer: str = Field(
        default="",
        description="Issuer URL; its /.well-known/openid-configuration gives the endpoints "
        "(EGI Check-in: https://aai.egi.eu/auth/realms/egi).",
    )
    client_id: str = Field(default="", description="Client id registered at the provider.")
    client_secret: str = Field(default="", description="Client secret registered at the provider.")
    display_name: str = Field(
        default="OIDC", description="The provider's name on the login button ('Sign in with EGI Check-in')."
    )
    callback_url: str = Field(
        default="", description="Redirect URI registered at the provider (default <public_url>/hub/oauth_callback)."
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email", "offline_access"],
        description="Scopes asked for (EGI Check-in also needs eduperson_entitlement; offline_access gives the "
        "refresh token that keeps long sessions logged in).",
    )
    username_claim: str = Field(
        default="preferred_username",
        description="Claim that becomes the user name (lower-cased; 1-64 letters, digits, '.', '_', '-').",
    )
    group_claims: list[str] = Field(
        default_factory=lambda: ["eduperson_entitlement", "groups"],
        description="Claims listing the user's entitlements or groups (EGI: eduperson_entitlement; Keycloak: groups).",
    )
    vo_pattern: str = Field(
        default=r"^urn:mace:egi\.eu:group:(?P<vo>[^:#]+)",
        description="Regular expression with a group 'vo' that finds the VO in an entitlement or group.",
    )
    allowed_vos: list[str] = Field(
        default_factory=list,
        description="VOs whose members may log in; others are refused with the reason. Empty: no VO needed.",
    )
    role_map: dict[str, Role] = Field(
        default_factory=dict,
        description="Entitlement or group (shell-style pattern) -> role basic/intermediate/advanced; "
        "the highest role matched wins.",
    )
    default_role: Role = Field(default="basic", description="Role of a user no role_map entry matches.")
    admin_groups: list[str] = Field(
        default_factory=list, description="Entitlements or groups (shell-style patterns) that make a user an admin."
    )
    local_login: bool = Field(
        default=True,
        description="Keep the local accounts' login form beside the 'Sign in with' button (e.g. local admins).",
    )
    refresh_age: int = Field(
        default=60, description="Seconds between checks of a logged-in user's tokens and claims (auth_refresh_age)."
    )
    refresh_before: int = Field(
        default=300,
        description="An access token with fewer seconds than this left is refreshed with the refresh token.",
    )
    ssl_verify: bool = Field(default=True, description="Verify the provider's TLS certificate.")

    @field_validator("vo_pattern")
    @classmethod
    def _vo_pattern_has_vo_group(cls, v: str) -> str:
        """A pattern that does not compile, or finds no 'vo', would refuse every user at login: say so at start."""
        import re

        try:
            compiled = re.compile(v)
        except re.error as e:
            raise ValueError(f"oidc.vo_pattern is not a regular expression: {e}") from None
        if "vo" not in compiled.groupindex:
            raise ValueError("oidc.vo_pattern needs a named group 'vo', e.g. ^urn:mace:egi\\.eu:group:(?P<vo>[^:#]+)")
        return v


class GpuDevice(BaseModel):
    """One GPU of the local inventory, handed out through CUDA_VISIBLE_DEVICES."""

    id: str = Field(description="device index or UUID as CUDA_VISIBLE_DEVICES expects it")
    model: str = Field(default="unknown", description="model name shown in the form, e.g. 'Tesla T4'")


IMAGE_REGISTRY = "ghcr.io/ai4lab"


def _image(name: str, gpu: bool = False) -> str:
    """The platform's own image ``name`` of this release (``images/``; built and pushed on a tag)."""
    from ai4lab import __version__

    return f"{IMAGE_REGISTRY}/{name}:{__version__}{'-gpu' if gpu else ''}"


class SessionEnvironment(BaseModel):
    """A software environment offered in the session form (Base, PyTorch, TensorFlow, or the operator's own).

    Why a list of requirements and not just an image: on one machine there is no
    image to run, so the environment is a virtual environment built from these
    requirements on top of the session environment, the way module environments
    are built; on a cluster the same choice names an image built from the same list.
    """

    display_name: str = Field(description="name shown in the form, e.g. 'PyTorch'")
    description: str = Field(default="", description="one line shown under the choice")
    requirements: list[str] = Field(
        default_factory=list,
        description="pip requirements installed on top of the session environment (empty: the session "
        "environment itself). Pin them: the built environment is cached by this list.",
    )
    check: str = Field(
        default="",
        description="Python statements that must run in the built environment (e.g. 'import torch'); "
        "a build that fails them is not kept.",
    )
    index_urls: list[str] = Field(
        default_factory=list,
        description="package indexes searched before PyPI, e.g. https://download.pytorch.org/whl/cpu for "
        "PyTorch's CPU builds on a machine without GPUs (PyPI's Linux build of torch brings CUDA, several GB)",
    )
    image: str = Field(default="", description="container image of this environment on cluster backends (CPU)")
    gpu_image: str = Field(default="", description="container image when the session has GPUs ('' : image)")

    @field_validator("requirements")
    @classmethod
    def _no_options(cls, v: list[str]) -> list[str]:
        """Requirements only: an option (``--index-url``, ``-e``) would change how every build runs."""
        for req in v:
            if not req.strip() or req.strip().startswith("-"):
                raise ValueError(f"{req!r} is not a requirement: give package specifiers like 'torch==2.13.0'")
        return [r.strip() for r in v]


def _ide_environment(
    key: str, name: str, description: str, requirement: str = "", module: str = ""
) -> SessionEnvironment:
    """One of the platform's own environments: its image is ``ide-<key>`` (images/ide)."""
    return SessionEnvironment(
        display_name=name,
        description=description,
        requirements=[requirement] if requirement else [],
        check=f"import {module}" if module else "",
        image=_image(f"ide-{key}"),
        gpu_image=_image(f"ide-{key}", gpu=True),
    )


def _default_environments() -> dict[str, SessionEnvironment]:
    return {
        "base": _ide_environment(
            "base", "Base", "Python with Jupyter, MLflow, pandas and scikit-learn; no deep-learning framework."
        ),
        "pytorch": _ide_environment("pytorch", "PyTorch", "PyTorch 2.13 on top of Base.", "torch==2.13.0", "torch"),
        "tensorflow": _ide_environment(
            "tensorflow",
            "TensorFlow",
            "TensorFlow 2.21 (CPU build here; the GPU image has the CUDA build) on top of Base.",
            "tensorflow-cpu==2.21.0",
            "tensorflow",
        ),
    }


def _default_find_links() -> list[str]:
    """pip's own ``PIP_FIND_LINKS``: where this machine keeps wheels (a CPU build of PyTorch, say)."""
    from ai4lab.core.envs import default_find_links

    return default_find_links()


class SourceConfig(BaseModel):
    """One catalog source (``catalog_sources``); earlier sources win when ids collide."""

    name: str = Field(description="unique name, shown as each item's source")
    type: Literal["folder", "git", "http", "repo"] = Field(
        description="folder; git (a catalog repo, clone) or http (its raw files); repo: one module or tool "
        "repository, cloned with its code so that it runs here"
    )
    path: str | None = Field(default=None, description="folder: path holding modules/ and tools/ (or items)")
    kind: Literal["module", "tool"] | None = Field(
        default=None, description="git/http: module or tool; folder: set when the folder holds one kind only"
    )
    url: str | None = Field(
        default=None,
        description="git: catalog repo URL; http: base URL of the catalog repo's raw files; "
        "repo: the module's repository URL",
    )
    branch: str | None = Field(default=None, description="git, repo: branch (default: the repository's default)")
    raw_url_template: str = Field(
        default="https://raw.githubusercontent.com/{org}/{repo}/{branch}/{file}",
        description="http: where an item repo's metadata file is read",
    )
    refresh_interval: int = Field(default=3600, description="seconds between refreshes of a remote source")


def bundled_catalog_path() -> Path:
    """``config/catalog``: the platform's own modules and tools."""
    from ai4lab.core.runtime import shipped

    return shipped("catalog")


def _default_sources() -> list[SourceConfig]:
    return [SourceConfig(name="bundled", type="folder", path=str(bundled_catalog_path()))]


def _default_quotas() -> dict[str, Quota]:
    return {
        "basic": Quota(cpu=2, ram_gb=4, gpu=0, sessions=1, trainings=0, storage_gb=5),
        "intermediate": Quota(cpu=4, ram_gb=16, gpu=1, sessions=2, trainings=1, storage_gb=50),
        "advanced": Quota(cpu=8, ram_gb=32, gpu=2, sessions=4, trainings=2, storage_gb=200),
    }


def _default_config_file() -> Path:
    return Path(os.environ.get("AI4LAB_CONFIG", "ai4lab.yaml"))


class Settings(BaseSettings):
    """Settings of one ai4lab platform instance."""

    model_config = SettingsConfigDict(env_prefix="AI4LAB_", env_nested_delimiter="__", extra="ignore")

    state_dir: Path = Field(
        default=Path(".ai4lab"),
        description="Folder holding the database, user storage, workspaces, secrets and logs.",
    )
    ip: str = Field(default="127.0.0.1", description="Address the public proxy listens on.")
    port: int = Field(default=8000, description="Port of the public proxy (the URL users open).")
    hub_port: int = Field(default=8081, description="Port of the hub's internal API.")
    proxy_api_port: int = Field(default=8001, description="Port of the proxy's REST API.")
    api_port: int = Field(default=8090, description="Port of the platform API service.")
    mlflow_port: int = Field(default=8092, description="Port of the MLflow gateway service.")
    mlflow_backend_port: int = Field(
        default=8093, description="Port of the MLflow server behind the gateway (loopback only)."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the platform database; default SQLite in the state folder. "
        "PostgreSQL: postgresql+psycopg://user:pw@host/db",
    )
    mlflow_backend_store_uri: str | None = Field(
        default=None, description="MLflow backend store; default SQLite in the state folder."
    )
    mlflow_artifacts_destination: str | None = Field(
        default=None, description="MLflow artifact root; default a folder in the state folder."
    )
    authenticator: str = Field(
        default="ai4lab",
        description="JupyterHub authenticator (entry point name or import path); "
        "'ai4lab' checks the platform's local accounts; 'ai4lab-oidc' logs in through an OIDC provider "
        "(see oidc), local accounts too unless oidc.local_login is off.",
    )
    spawner: str = Field(
        default="ai4lab-local",
        description="JupyterHub spawner (entry point name or import path).",
    )
    oidc: OidcSettings = Field(
        default_factory=OidcSettings,
        description="OIDC login (with authenticator: ai4lab-oidc): issuer, client, claims -> VOs and roles "
        "(AI4LAB_OIDC__ISSUER, ...).",
    )
    backend: Literal["local", "nomad"] = Field(
        default="local",
        description="Where module and training deployments run: 'local' processes or a 'nomad' cluster.",
    )
    nomad: NomadSettings = Field(
        default_factory=NomadSettings, description="Nomad cluster (AI4LAB_NOMAD__ADDRESS, ...)."
    )
    quotas: dict[str, Quota] = Field(default_factory=_default_quotas, description="Per-role resource limits.")
    storage: StorageBackend = Field(
        default_factory=StorageBackend,
        description="Where users' storage lives: local (a folder per user in the state folder), s3 or webdav "
        "(one folder per user below the URL; see README 'Connect your storage').",
    )
    own_storage: bool = Field(
        default=True, description="Users may connect their own S3 or WebDAV storage instead of the platform's."
    )
    own_storage_allow_http: bool = Field(
        default=False, description="Users' own storage may be at a plain http:// address (a lab network, tests)."
    )
    session_environments: dict[str, SessionEnvironment] = Field(
        default_factory=_default_environments,
        description="Environments offered in the session form: {key: {display_name, description, requirements, "
        "check, index_urls, image, gpu_image}}. Entries are merged onto the defaults (base, pytorch, tensorflow); "
        "null removes one.",
    )
    env_build_timeout: float = Field(
        default=900,
        description="Seconds the build of a session environment may take (a first TensorFlow build downloads "
        "hundreds of MB); a session whose environment is not built yet may take this much longer to start.",
    )
    env_find_links: list[str] = Field(
        default_factory=_default_find_links,
        description="Folders (or pages) of wheels that environment builds look in besides the package index, "
        "e.g. a CPU build of torch kept on disk (default: pip's PIP_FIND_LINKS).",
    )
    gpus: list[GpuDevice] = Field(
        default_factory=list,
        description="Local GPU inventory, e.g. [{id: '0', model: 'Tesla T4'}]; empty means no GPU.",
    )
    idle_timeout: int = Field(
        default=3600, description="Seconds of inactivity after which sessions are stopped (0: never)."
    )
    deployment_idle_timeout: int = Field(
        default=3600,
        description="Seconds without a request after which a module deployment is stopped (0: never).",
    )
    max_upload_mb: float = Field(default=20, description="Largest upload accepted by predictions (MB).")
    secret_max_bytes: int = Field(
        default=65536,
        ge=1,
        description="Largest value of one user secret (bytes, UTF-8): tokens, passwords, a key file.",
    )
    secrets_per_user: int = Field(
        default=100, ge=0, description="How many secrets one user may keep (`ai4lab secrets set`)."
    )
    allow_token_in_url: bool = Field(
        default=False,
        description="Accept a hub token as ?token= in URLs of the platform API and the MLflow gateway. "
        "Off (as in JupyterHub services): a token in a URL ends up in logs, browser history and "
        "Referer headers; send 'Authorization: token <token>' instead.",
    )
    flower_bind_host: str = Field(
        default="127.0.0.1",
        description="Interface Flower servers listen on (0.0.0.0 to accept clients from other machines).",
    )
    flower_tls: bool = Field(
        default=True,
        description="Flower servers speak HTTPS with a self-signed certificate per deployment that clients pin.",
    )
    flower_advertised_host: str = Field(
        default="",
        description="Host name clients use to reach Flower servers (default: the host of public_url).",
    )
    runtime_dir: Path = Field(
        default_factory=default_runtime_dir,
        description="What user processes execute: module environments, the session environment, code-server. "
        "Readable and executable by user accounts, writable by the platform only "
        "(default /opt/ai4lab as root, else ~/.cache/ai4lab).",
    )
    envs_dir: Path | None = Field(
        default=None,
        description="Cache of the per-module virtual environments (default <runtime_dir>/envs).",
    )
    tools_dir: Path | None = Field(
        default=None,
        description="Where the installer put configurable-http-proxy and code-server (bin/ inside; "
        "default <runtime_dir>/tools).",
    )
    user_python: Path | None = Field(
        default=None,
        description="Python that module and session environments are built from; user accounts must be able "
        "to run it (default: /usr/bin/python3 as root, since pyenv's lives under /root; else the platform's).",
    )
    session_env: Path | None = Field(
        default=None,
        description="Virtual environment sessions run from (jupyterhub-singleuser, JupyterLab, the Lab extension); "
        "default <runtime_dir>/session as root (built by scripts/install.sh), else the platform's own.",
    )
    isolation: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: when the platform runs as root, each account gets its own system user and all user "
        "code runs as it; off: single-user mode, everything runs as the platform's user.",
    )
    system_user_prefix: str = Field(
        default="ai4-", description="Prefix of the system user made for each account (ai4-alice)."
    )
    system_uid_min: int = Field(default=20000, description="Lowest uid (and gid) of the per-account system users.")
    system_uid_max: int = Field(default=29999, description="Highest uid (and gid) of the per-account system users.")
    job_nice: int = Field(
        default=5,
        ge=0,
        le=19,
        description="Nice level of user code (sessions, module servers, trainings): the hub, proxy and platform API "
        "keep answering while many sessions start. Within cgroups their weights decide between groups; without "
        "cgroups (not root) this is what keeps the platform ahead.",
    )
    cgroup_parent: str = Field(
        default="",
        description="cgroup (below the cgroup root) holding one group per local job with its CPU and memory "
        "limits; default ai4lab-<hash of the state folder>, so that platforms on one machine never touch each "
        "other's groups.",
    )
    allow_shared_single_user: bool = Field(
        default=False,
        description="In single-user mode (not root), allow more than one non-admin account although their "
        "code all runs as the same system user and can read each other's files.",
    )
    resources_hard: bool = Field(
        default=False,
        description="Treat the resources an item's metadata declares as minimums: a deployment this platform "
        "or the user's quota cannot give them is refused. Off (as in AI4OS): they are defaults, and a GPU "
        "that cannot be given is a warning, the module runs on CPU.",
    )
    catalog_sources: list[SourceConfig] = Field(
        default_factory=_default_sources,
        description="Catalog sources in priority order: the bundled catalog, local folders, "
        "remote AI4OS catalogs (git or http).",
    )
    log_level: str = Field(default="INFO", description="Log level of hub and services.")
    oscar_endpoint: str | None = Field(
        default=None,
        description="OSCAR cluster URL for serverless inference (e.g. https://inference.cloud.ai4eosc.eu); "
        "unset: serverless deployments are off.",
    )
    oscar_cluster_id: str = Field(default="oscar", description="OSCAR cluster id written into service definitions.")
    oscar_user: str | None = Field(default=None, description="OSCAR basic-auth user (or use oscar_token).")
    oscar_password: str | None = Field(default=None, description="OSCAR basic-auth password.")
    oscar_token: str | None = Field(
        default=None, description="OIDC access token for OSCAR (EGI Check-in), instead of user/password."
    )
    oscar_ssl_verify: bool = Field(default=True, description="Verify the OSCAR cluster's TLS certificate.")
    oscar_vo: str | None = Field(default=None, description="VO the OSCAR services are created in (OIDC clusters).")
    oscar_timeout: float = Field(default=300, description="Seconds to wait for one synchronous OSCAR invocation.")

    zenodo_url: str = Field(
        default="https://zenodo.org",
        description="Zenodo whose REST API resolves dataset DOIs (10.5281/zenodo.<n>) and record URLs "
        "(<zenodo_url>/api/records/<n>); a Zenodo sandbox or mirror, or a local fake in tests.",
    )
    dataset_imports: int = Field(
        default=2, ge=1, description="Dataset imports one user may run at once; more are refused (429)."
    )
    dataset_timeout: float = Field(
        default=60, description="Seconds a dataset download may wait for the server's next bytes before it fails."
    )

    @model_validator(mode="after")
    def _fill_runtime_paths(self) -> Settings:
        """Defaults that live below ``runtime_dir`` (one setting moves them all)."""
        if self.envs_dir is None:
            self.envs_dir = (
                Path(os.environ["AI4LAB_ENVS_DIR"]) if os.environ.get("AI4LAB_ENVS_DIR") else self.runtime_dir / "envs"
            )
        if self.tools_dir is None:
            self.tools_dir = self.runtime_dir / "tools"
        if self.user_python is None:
            self.user_python = default_user_python()
        if not self.cgroup_parent:
            import hashlib

            self.cgroup_parent = "ai4lab-" + hashlib.sha256(str(self.state).encode()).hexdigest()[:10]
        if self.session_env is None:
            self.session_env = self.runtime_dir / "session" if self.isolating else Path(sys.prefix)
        return self

    @field_validator("session_environments", mode="before")
    @classmethod
    def _merge_environments_onto_defaults(cls, v: Any) -> Any:
        """An operator's environment is added to Base/PyTorch/TensorFlow; ``key: null`` removes one."""
        if not isinstance(v, dict):
            return v
        merged: dict[str, Any] = dict(_default_environments())
        for key, given in v.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", str(key)):
                raise ValueError(f"environment key {key!r}: use 1-32 lower-case letters, digits, '-' or '_'")
            if given is None:
                merged.pop(key, None)
            elif isinstance(given, dict) and key in merged and "display_name" not in given:
                merged[key] = {**merged[key].model_dump(), **given}  # a partial override keeps the rest
            else:
                merged[key] = given
        if not merged:
            raise ValueError("session_environments removes every environment: keep at least one (base)")
        return merged

    @field_validator("quotas", mode="before")
    @classmethod
    def _merge_quotas_onto_defaults(cls, v: Any) -> Any:
        """A partial override (``AI4LAB_QUOTAS__BASIC__CPU=1``) keeps the other defaults."""
        if not isinstance(v, dict):
            return v
        unknown = set(v) - set(ROLES)
        if unknown:
            raise ValueError(f"quotas for unknown role(s): {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)}")
        merged: dict[str, Any] = {}
        for role, default in _default_quotas().items():
            given = v.get(role, {})
            given = given.model_dump() if isinstance(given, Quota) else dict(given)
            merged[role] = {**default.model_dump(), **given}
        return merged

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=_default_config_file())
        return (init_settings, env_settings, yaml_source)

    # -- derived paths -----------------------------------------------------
    @property
    def isolating(self) -> bool:
        """Per-user system accounts are on: the platform runs as root and isolation is not off."""
        return self.isolation != "off" and os.geteuid() == 0

    @property
    def state(self) -> Path:
        return self.state_dir.expanduser().resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state / 'ai4lab.sqlite'}"

    @property
    def hub_db_url(self) -> str:
        return f"sqlite:///{self.state / 'jupyterhub.sqlite'}"

    @property
    def tools_bin(self) -> Path:
        """``bin/`` of ``tools_dir``: configurable-http-proxy, code-server."""
        return (self.tools_dir or self.runtime_dir / "tools") / "bin"

    @property
    def storage_root(self) -> Path:
        return self.state / "storage"

    @property
    def workspaces_root(self) -> Path:
        return self.state / "workspaces"

    @property
    def logs_dir(self) -> Path:
        return self.state / "logs"

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.ip in ("0.0.0.0", "", "::") else self.ip
        return f"http://{host}:{self.port}"

    @property
    def catalog_cache(self) -> Path:
        return self.state / "catalog-cache"

    @property
    def published_root(self) -> Path:
        """Copies of published packages (the platform's; each owned by its publisher)."""
        return self.state / "published"

    @property
    def deployments_root(self) -> Path:
        return self.state / "deployments"

    def user_storage(self, username: str) -> Path:
        return self.storage_root / username

    def user_workspace(self, username: str) -> Path:
        return self.workspaces_root / username


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own ``Settings``)."""
    return Settings()
