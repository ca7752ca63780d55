"""Response models of the platform API: what each answer holds, so that the OpenAPI schema documents it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

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
    progress: dict[str, int] | None = Field(default=None, description="batch jobs: files done and total")


class Me(BaseModel):
    name: str
    admin: bool
    role: str = Field(description="basic, intermediate or advanced")
    vo: str | None = None
    quota: Quota = Field(description="what the role allows")
    gpus: list[GpuDevice] = Field(description="the GPUs of this platform")


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
