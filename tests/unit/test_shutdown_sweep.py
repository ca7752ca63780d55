"""A platform shutdown ends what is still running, and marks each deployment with what happens next.

Only kinds that start again with the platform (sessions, module servers) get
the reason that means "will be resumed"; a job or a tool cannot resume where it
was, so it ends with a reason that says so, and no restart picks it up.
"""

from __future__ import annotations

from pathlib import Path

from ai4lab.core import db
from ai4lab.core import deployments as deps
from ai4lab.core.settings import Settings
from ai4lab.deploy.registry import resumes_after_restart
from ai4lab.jhub.launcher import sweep_local_processes


def test_only_resumable_kinds_are_marked_for_resuming(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    db.upgrade(settings.db_url)
    made = {kind: deps.create(settings.db_url, owner="ann", kind=kind, name=kind, status="running").id
            for kind in ("ide", "module", "training", "batch", "tool")}
    queued = deps.create(settings.db_url, owner="ann", kind="training", name="later", status="queued").id
    sweep_local_processes(settings)
    after = {kind: deps.get(settings.db_url, dep_id) for kind, dep_id in made.items()}
    for kind in ("ide", "module"):
        assert (after[kind].status, after[kind].status_reason) == ("stopped", deps.SHUTDOWN_REASON), kind
    assert (after["training"].status, after["training"].status_reason) == \
        ("failed", "the platform was stopped during the training")
    assert (after["batch"].status, after["batch"].status_reason) == ("failed", "the platform was stopped during the batch")
    assert (after["tool"].status, after["tool"].status_reason) == ("stopped", "the platform was stopped")
    assert deps.get(settings.db_url, queued).status == "queued"  # waits for the next start
    assert [k for k in made if resumes_after_restart(k, "local")] == ["ide", "module"]
