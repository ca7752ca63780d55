"""Response models of the platform API: what each answer holds, so that the OpenAPI schema documents it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ai4lab.core.settings import GpuDevice, Quota


class DeploymentView(BaseModel):
    """One deployment as its owner (or an admin) sees it; secrets of its backend state are never in it."""

    id: str
    owner: str
    vo: str | None = None
    kind: str = Field(description="ide, module, training, batch, tool, serverless, pipeline, ...")
    name: str
    backend: str = Field(description="where it runs: local, nomad, oscar, pipeline")
    spec: dict[str, Any] = Field(description="what was asked: item, resources, arguments")
    warnings: list[str] = Field(description="resources its metadata recommends that it did not get")
    status: str = Field(description="queued, starting, running, succeeded, failed, stopped, cancelled")
    status_reason: str = ""
    endpoints: dict[str, Any] = Field(description="where to reach it: api, ui, predict, outputs, mlflow_run, ...")
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    progress: dict[str, int] | None = Field(
        default=None,
        description="batch jobs: files done and total; dataset imports: bytes done and total, "
        "and files_done, files_total, bytes_done, bytes_total",
    )


class StorageUsage(BaseModel):
    used_bytes: int | None = Field(description="what the user's storage holds (None: their own storage)")
    allowed_bytes: int | None = Field(
        description="what their role's quota allows (quota.storage_gb); None: their own storage, no platform quota"
    )


class StorageWhere(BaseModel):
    """Where my storage is: the platform's, or my own server; never the password."""

    source: str = Field(description="platform or own")
    type: str = Field(description="local, s3 or webdav")
    url: str
    endpoint_url: str
    region: str
    vendor: str
    username: str
    password: str = Field(description="'***' when one is set; never the password itself")
    per_user_folder: bool


class Me(BaseModel):
    name: str
    admin: bool
    role: str = Field(description="basic, intermediate or advanced")
    vo: str | None = None
    quota: Quota = Field(description="what the role allows")
    storage: StorageUsage = Field(description="storage used against the quota")
    gpus: list[GpuDevice] = Field(description="the GPUs of this platform")


class OidcToken(BaseModel):
    access_token: str = Field(description="the caller's current access token at the OIDC provider")
    expires_at: float | None = Field(default=None, description="when it expires (Unix time), if the provider said")


class Account(BaseModel):
    name: str
    role: str
    admin: bool
    vo: str | None = None


class StorageEntry(BaseModel):
    name: str
    path: str
    type: str = Field(description="file or directory")
    size: int | None = None
    modified: str | None = None

    model_config = {"extra": "allow"}


class StorageListing(BaseModel):
    path: str
    type: str = "directory"
    content: list[StorageEntry]


class Answer(BaseModel):
    """An answer whose documented fields are checked; fields added later still reach the client."""

    model_config = ConfigDict(extra="allow")


class FlowerRound(Answer):
    round: int
    metrics: dict[str, Any] = Field(description="the aggregated metrics of the round")


class FlowerInfo(Answer):
    """A Flower server deployment as its panel shows it."""

    id: str
    address: str | None = Field(description="host:port the clients join (once running)")
    tls: bool = Field(description="whether clients must pin the server's certificate")
    status: str
    status_reason: str
    state: str = Field(description="the server's own state: starting, waiting for clients, round n, finished, ...")
    config: dict[str, Any] = Field(description="rounds, strategy, metric, minimum clients ...")
    metric: str
    rounds_total: int
    rounds: list[FlowerRound]
    result: float | None = Field(description="the metric after the last round")
    clients: list[dict[str, Any]] = Field(description="clients connected now")
    refused: int = Field(description="connections refused for a wrong token")
    mlflow_run_id: str | None = None
    mlflow_run: str | None = None
    model: str | None = Field(default=None, description="the final global model in the owner's storage")
    error: str | None = None


class FlowerToken(Answer):
    token: str
    address: str
    certificate: str | None = Field(description="the server's certificate (PEM), when it speaks TLS")
    snippet: str = Field(description="how a client joins, from a terminal or a notebook")


class CvatAccess(Answer):
    url: str | None = Field(description="CVAT's UI, once running")
    username: str | None
    password: str | None
    status: str


class CvatExport(Answer):
    dataset: str = Field(description="the folder in the owner's storage")
    files: list[str]


class MetricPoint(Answer):
    step: int
    value: float


class Metrics(Answer):
    run_id: str | None
    status: str | None = None
    metrics: dict[str, list[MetricPoint]]


class Source(Answer):
    """A catalog source as admins see it."""

    name: str
    type: str
    url: str | None = None
    path: str | None = None
    kind: str | None = None
    branch: str | None = None
    added: bool = Field(description="added at run time (not in the settings file)")
    fetched_at: Any = None
    last_error: str | None = None
    items: list[str]


class Refreshed(Answer):
    modules: int
    tools: int
    errors: list[dict[str, Any]]


class Removed(Answer):
    removed: str


class Withdrawn(Answer):
    withdrawn: str


class Deleted(Answer):
    deleted: str


class SecretEntry(BaseModel):
    """One of my secrets as the API shows it: its name and times, never its value."""

    name: str = Field(description="the environment variable (or file) name it is given as")
    created_at: str | None = None
    updated_at: str | None = None


class DatasetCard(Answer):
    """Where a dataset came from (its ``dataset.json``, written by the import)."""

    name: str
    path: str
    source: str = Field(description="zenodo:<record id>, or the URL it was downloaded from")
    title: str | None = None
    doi: str | None = None
    record_url: str | None = None
    creators: list[str] = Field(default_factory=list)
    license: str | None = None
    version: str | None = None
    imported_at: str | None = None
    files: list[dict[str, Any]] = Field(default_factory=list, description="key, size, md5, sha256, url of each file")


class DatasetEntry(Answer):
    """One folder under ``datasets/`` of the caller's storage."""

    name: str
    path: str = Field(description="its path in the storage: what a training's dataset field takes")
    files: int = Field(description="files in the folder, besides its card")
    bytes: int
    data_files: list[str] = Field(default_factory=list, description="names of its files besides the card (first 50)")
    modified: str | None = None
    card: DatasetCard | None = Field(description="its card, when it was imported (or has a dataset.json)")
