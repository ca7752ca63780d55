"""OSCAR backend: serverless inference services on an OSCAR cluster (the AI4OS inference platform).

Thin on purpose, so that it works the first time against a real cluster:

* service CRUD (``/system/services``) and job logs (``/system/logs``) go
  through ``oscar-python``'s ``Client`` (basic auth or an OIDC token, TLS
  verification as configured), run in a thread since it uses ``requests``;
* invocations (``/run/{service}`` synchronous, ``/job/{service}`` asynchronous)
  go through httpx with the service's own token (what OSCAR asks for; an OIDC
  token works too), the body being base64 as FaaS Supervisor expects.

Errors come back as :class:`OscarError` with the cluster's HTTP status and text.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from ai4lab.oscar.service import OscarResult, decode_output


class OscarError(RuntimeError):
    """The OSCAR cluster refused or failed a call; ``status`` is its HTTP status (0: unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def answer_status(self) -> int:
        """The status the platform answers its own caller with.

        OSCAR's refusals of the request (400, 404, 409 conflict, ...) pass through; OSCAR failing, not
        answering (0, 5xx) or refusing the platform's own credentials (401, 403: nothing the caller can
        fix) is a bad gateway, 502, or 504 when it did not answer in time.
        """
        if self.status == 504:
            return 504
        if 400 <= self.status < 500 and self.status not in (401, 403):
            return self.status
        return 502


@dataclass
class OscarConfig:
    endpoint: str
    cluster_id: str = "oscar"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    ssl_verify: bool = True
    timeout: float = 300.0

    @classmethod
    def from_settings(cls, settings: Any) -> OscarConfig | None:
        """None when no OSCAR cluster is configured."""
        if not settings.oscar_endpoint:
            return None
        return cls(
            endpoint=settings.oscar_endpoint.rstrip("/"),
            cluster_id=settings.oscar_cluster_id,
            user=settings.oscar_user,
            password=settings.oscar_password,
            token=settings.oscar_token,
            ssl_verify=settings.oscar_ssl_verify,
            timeout=settings.oscar_timeout,
        )

    def client_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"cluster_id": self.cluster_id, "endpoint": self.endpoint, "ssl": self.ssl_verify}
        if self.user:
            return opts | {"user": self.user, "password": self.password or ""}
        if self.token:
            return opts | {"oidc_token": self.token}
        raise ValueError("OSCAR needs oscar_user + oscar_password or oscar_token")


class OscarBackend:
    name = "oscar"

    def __init__(self, config: OscarConfig) -> None:
        from oscar_python.client import Client

        self.config = config
        self.client = Client(config.client_options())
        self.http = httpx.AsyncClient(verify=config.ssl_verify, timeout=config.timeout)

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run an oscar-python call in a thread; HTTP errors become OscarError with the cluster's reason."""
        import requests

        try:
            return await asyncio.to_thread(fn, *args)
        except requests.HTTPError as e:
            resp = e.response
            if resp is None:
                raise OscarError(502, f"OSCAR call failed: {e}") from None
            text = (resp.text or "").strip() or resp.reason
            raise OscarError(resp.status_code, f"OSCAR answered {resp.status_code}: {text}") from None
        except requests.RequestException as e:
            raise OscarError(0, f"OSCAR at {self.config.endpoint} does not answer: {e}") from None
        except json.JSONDecodeError as e:  # an answer oscar-python reads as JSON and is not
            raise OscarError(502, f"OSCAR answered something that is not JSON: {e}") from None
        except ValueError as e:
            # oscar-python's own checks, before or instead of a request: only "already present" (a service
            # of that name exists) is a conflict; the others keep their reason
            message = str(e)
            if "already present" in message:
                raise OscarError(409, message) from None
            if "not present" in message:  # update_service of a service the cluster does not have
                raise OscarError(404, message) from None
            raise OscarError(400, f"oscar-python refused the call: {message}") from None

    # -- services ------------------------------------------------------------------
    async def create_service(self, service: dict[str, Any]) -> None:
        await self._call(self.client.create_service, service)

    async def get_service(self, name: str) -> dict[str, Any] | None:
        try:
            resp = await self._call(self.client.get_service, name)
        except OscarError as e:
            if e.status == 404:
                return None
            raise
        return json.loads(resp.text)

    async def remove_service(self, name: str) -> None:
        try:
            await self._call(self.client.remove_service, name)
        except OscarError as e:
            if e.status != 404:  # already gone is what we wanted
                raise

    async def list_services(self) -> list[dict[str, Any]]:
        return json.loads((await self._call(self.client.list_services)).text)

    async def jobs(self, name: str) -> dict[str, Any]:
        return json.loads((await self._call(self.client.list_jobs, name)).text)

    async def job_logs(self, name: str, job: str) -> str:
        return (await self._call(self.client.get_job_logs, name, job)).text

    # -- invocations -----------------------------------------------------------------
    async def service_token(self, name: str) -> str:
        """The token /run and /job accept: the OIDC token when we have one, else the service's own."""
        if self.config.token and not self.config.user:
            return self.config.token
        svc = await self.get_service(name)
        if svc is None:
            raise OscarError(404, f"OSCAR service {name} does not exist (any more)")
        return str(svc.get("token") or "")

    async def _invoke(self, path: str, body: bytes, token: str) -> httpx.Response:
        try:
            return await self.http.post(
                f"{self.config.endpoint}{path}",
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
            )
        except httpx.TimeoutException:
            raise OscarError(504, f"OSCAR did not answer within {self.config.timeout:g} s") from None
        except httpx.TransportError as e:
            raise OscarError(0, f"OSCAR at {self.config.endpoint} does not answer: {e}") from None

    async def run(self, name: str, body: bytes, token: str | None = None) -> OscarResult:
        """Synchronous invocation: the decoded output (JSON or file), or ``error`` when the input was refused."""
        resp = await self._invoke(f"/run/{name}", body, token or await self.service_token(name))
        if resp.status_code != 200:
            tail = "\n".join(resp.text.strip().splitlines()[-10:])
            raise OscarError(resp.status_code, f"OSCAR service {name} failed ({resp.status_code}): {tail}")
        try:
            return decode_output(resp.text)
        except ValueError as e:
            raise OscarError(502, str(e)) from None

    async def submit_job(self, name: str, body: bytes, token: str | None = None) -> None:
        """Asynchronous invocation: OSCAR starts a job; its output goes to the service's output bucket."""
        resp = await self._invoke(f"/job/{name}", body, token or await self.service_token(name))
        if resp.status_code not in (200, 201):
            raise OscarError(resp.status_code, f"OSCAR refused the job ({resp.status_code}): {resp.text.strip()}")

    async def aclose(self) -> None:
        await self.http.aclose()
