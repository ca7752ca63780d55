"""Hub tokens handed to the processes of deployments: scoped, recorded by id, revoked when the deployment ends.

Trainings, batch jobs and Flower servers log to MLflow as their owner, so their
process gets a hub token of the owner. Why each part:

- *scoped*: the token carries only ``access:services!service=mlflow``, what the
  MLflow gateway checks (``HubAuthenticator`` asks for access to its own
  service). A process that leaks it (module code is user code) cannot call the
  platform API, the hub's REST API, or the owner's sessions with it.
- *recorded by id*: the deployment keeps the token's id (``backend_state
  ["hub_token_id"]``), never the token; the id is enough to revoke it.
- *revoked when the deployment ends*: whichever way a deployment reaches a final
  status (succeeded, failed, stopped, cancelled; by its watcher, by a user, by
  the launcher at shutdown, by recovery after a restart), it goes through
  ``deployments.set_status``; :func:`revoke_ended_tokens` runs in the platform
  API's watch loop and revokes the tokens of every ended deployment that still
  holds one. The week-long expiry stays as a backstop for a hub that is gone.
"""

from __future__ import annotations

import logging

import httpx

from ai4lab.client.hub import HubClient, HubError
from ai4lab.core import deployments as deps
from ai4lab.core.db import Deployment

log = logging.getLogger("ai4lab.core.process_tokens")
MLFLOW_SCOPES = ["access:services!service=mlflow"]
LIFETIME = 7 * 86400


async def issue_process_token(
    db_url: str,
    dep: Deployment,
    purpose: str,
    scopes: list[str] | None = None,
    hub: HubClient | None = None,
) -> str:
    """A token of ``dep``'s owner for its process, MLflow-only by default; its id is kept in the deployment.

    The id is written before the token is returned, so that a start that fails after
    this point still leaves a token to revoke rather than one nobody knows about.
    """
    model = await (hub or HubClient()).new_token_model(
        dep.owner, f"{purpose} {dep.id}", expires_in=LIFETIME, scopes=scopes or MLFLOW_SCOPES
    )
    deps.remember_hub_token(db_url, dep.id, str(model["id"]))
    return model["token"]


async def revoke_ended_tokens(db_url: str, hub: HubClient | None = None) -> list[str]:
    """Revoke the tokens of deployments that ended; returns their deployment ids.

    A token the hub no longer has (expired, deleted by hand) counts as revoked. One the
    hub refuses to delete, or a hub that does not answer, is tried again on the next call.
    """
    ended = deps.ended_with_hub_token(db_url)
    if not ended:
        return []
    client = hub or HubClient()
    done = []
    for dep in ended:
        token_id = dep.backend_state[deps.HUB_TOKEN_KEY]
        try:
            await client.revoke_token(dep.owner, token_id)
        except (HubError, httpx.TransportError) as e:
            log.warning(
                "could not revoke the hub token %s of deployment %s (%s): %s; trying again",
                token_id,
                dep.id,
                dep.status,
                e,
            )
            continue
        deps.forget_hub_token(db_url, dep.id)
        log.info("revoked the hub token %s of deployment %s (%s)", token_id, dep.id, dep.status)
        done.append(dep.id)
    return done
