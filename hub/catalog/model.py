"""Catalog items as the platform uses them, built from AI4OS ``ai4-metadata.yml`` (schema v2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Kind = Literal["module", "tool"]
KINDS: dict[str, Kind] = {"modules": "module", "tools": "tool"}


class Resources(BaseModel):
    """Minimum resources an item declares for one use (AI4OS ``resources.inference|training``)."""

    cpu: float | None = None
    gpu: int | None = None
    ram_mb: int | None = None
    gpu_memory_mb: int | None = None
    gpu_compute_capability: float | None = None
    disk_mb: int | None = None

    @classmethod
    def from_metadata(cls, raw: dict[str, Any] | None) -> Resources:
        raw = raw or {}
        return cls(
            cpu=raw.get("cpu"),
            gpu=raw.get("gpu"),
            ram_mb=raw.get("memory_MB"),
            gpu_memory_mb=raw.get("gpu_memory_MB"),
            gpu_compute_capability=raw.get("gpu_compute_capability"),
            disk_mb=raw.get("storage_MB"),
        )


class RunInfo(BaseModel):
    """How to run the item: a local package (DEEPaaS entry point) and/or a container image."""

    package_path: str | None = Field(default=None, description="folder of an installable Python package")
    entry_point: str | None = Field(default=None, description="name in the deepaas.v2.model entry point group")
    docker_image: str | None = None
    docker_tag: str = "latest"


class CatalogItem(BaseModel):
    id: str
    kind: Kind
    title: str
    summary: str
    description: str = ""
    tasks: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    libraries: list[str] = Field(default_factory=list)
    data_types: list[str] = Field(default_factory=list)
    links: dict[str, str] = Field(default_factory=dict)
    license: str | None = None
    created: str | None = None
    updated: str | None = None
    metadata_version: str | None = None
    resources_inference: Resources = Field(default_factory=Resources)
    resources_training: Resources = Field(default_factory=Resources)
    run: RunInfo = Field(default_factory=RunInfo)
    source: str = Field(description="name of the source this item came from")
    owner: str | None = Field(default=None, description="publishing user (published items only)")
    vo: str | None = None
    visibility: Literal["public", "vo", "private"] = "public"
    lineage: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict, description="the metadata as read")

    @property
    def gpu_capable(self) -> bool:
        """Declares a GPU in its resources, or is tagged 'gpu'."""
        declared = (self.resources_inference.gpu or 0) > 0 or (self.resources_training.gpu or 0) > 0
        return declared or any(t.lower() == "gpu" for t in self.tags)

    def summary_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "summary": self.summary,
            "tasks": self.tasks,
            "categories": self.categories,
            "tags": self.tags,
            "libraries": self.libraries,
            "data_types": self.data_types,
            "gpu_capable": self.gpu_capable,
            "source": self.source,
            "owner": self.owner,
            "visibility": self.visibility,
            "updated": self.updated,
            "docker_image": self.run.docker_image,
            "runs_locally": self.run.package_path is not None,
        }


class ItemError(BaseModel):
    """Why one item of a source could not be loaded (shown to admins)."""

    source: str
    item: str
    reason: str
    location: str = ""
