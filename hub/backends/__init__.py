"""Where deployments run: one interface, one implementation per kind of infrastructure."""

from ai4lab.backends.base import JobBackend, JobSpec, JobStatus

__all__ = ["JobBackend", "JobSpec", "JobStatus"]
