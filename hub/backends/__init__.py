"""Where deployments run: one interface, one implementation per kind of infrastructure."""

from ai4lab.backends.base import Backend, JobSpec, JobStatus

__all__ = ["Backend", "JobSpec", "JobStatus"]
