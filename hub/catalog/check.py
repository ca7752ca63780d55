"""Compatibility reports: does a catalog item run here, and if not, at which step and why.

Why: real AI4OS modules were written for their own images; before a user
finds out by deploying one, an admin (or the module's author) can ask the
platform to go through what a deployment does: validate the metadata, build
the environment the AI4OS way, load the DEEPaaS entry point, ``get_metadata``,
``warm``, and ``predict`` with the arguments' defaults. The report names the
first step that failed, with its log. Reports are kept in the state folder
(``checks/``) so that the admin view shows the last one of each item.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ai4lab.catalog import metadata as md
from ai4lab.catalog.model import CatalogItem
from ai4lab.core import isolation
from ai4lab.core.envs import EnvBuildError, ensure_env, env_bin
from ai4lab.core.isolation import Accounts
from ai4lab.core.settings import Settings
from ai4lab.deploy import runner, runner_result
from ai4lab.deploy.module_code import runner_env, working_copy

CHECK_TIMEOUT = 600.0


def _step(name: str, status: str, detail: str = "", log: str = "") -> dict[str, str]:
    return {"step": name, "status": status, "detail": detail, "log": log}


def run_check(item: CatalogItem, settings: Settings) -> dict[str, Any]:
    """Go through the item's steps (see the module docstring) and return the report.

    Never raises for the item's own faults: they are the report's failed step.
    """
    steps = [_metadata_step(item)]
    if steps[-1]["status"] == "ok":
        steps += _module_steps(item, settings)
    failed = next((s for s in steps if s["status"] == "failed"), None)
    report = {
        "item": item.id,
        "kind": item.kind,
        "source": item.source,
        "ok": failed is None,
        "first_failure": failed["step"] if failed else None,
        "steps": steps,
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    save(settings, report)
    return report


def _metadata_step(item: CatalogItem) -> dict[str, str]:
    name = f"metadata validates (schema {md.schema_version()})"
    try:
        md.validate(dict(item.metadata))
    except md.MetadataError as e:
        return _step(name, "failed", str(e))
    return _step(name, "ok")


def _module_steps(item: CatalogItem, settings: Settings) -> list[dict[str, str]]:
    if not item.run.package_path or not item.run.entry_point:
        image = f": it runs from its image {item.run.docker_image}" if item.run.docker_image else ""
        return [_step("environment builds", "skipped", f"no local package with a deepaas.v2.model entry point{image}")]
    try:
        env = ensure_env(Path(item.run.package_path), settings.envs_dir, find_links=settings.env_find_links)
    except (EnvBuildError, OSError, ValueError) as e:
        return [_step("environment builds", "failed", str(e).splitlines()[0], getattr(e, "output_tail", "") or str(e))]
    steps = [_step("environment builds", "ok", str(env))]
    # the module's code belongs to whoever published it: it runs as nobody, in a copy of its repository
    ident = Accounts.from_settings(settings).nobody()
    work = Path(tempfile.mkdtemp(prefix="ai4lab-check-"))
    try:
        os.chmod(work, 0o711)
        isolation.give(work, ident)
        repo = working_copy(env, work, ident)
        proc = isolation.run(
            ident,
            [str(env_bin(env, "python")), str(runner(settings, "oneshot.py")), "--check", item.run.entry_point],
            env=isolation.user_env(
                ident, work, {**runner_env(env, item.run.entry_point, repo), "PYTHONUNBUFFERED": "1"}
            ),
            cwd=repo,
            timeout=CHECK_TIMEOUT,
        )
    except Exception as e:  # noqa: BLE001 - a timeout or a crash of the runner is the report's last step
        return [*steps, _step("run the module", "failed", f"{type(e).__name__}: {e}")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    module_steps = runner_result(proc.stdout)
    if module_steps is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-30:])
        return [
            *steps,
            _step("run the module", "failed", f"the module's process ended with code {proc.returncode}", tail),
        ]
    return [*steps, *(_step(s["step"], s["status"], s.get("detail", ""), s.get("log", "")) for s in module_steps)]


def _path(settings: Settings, kind: str, item_id: str) -> Path:
    return settings.state / "checks" / f"{kind}-{item_id}.json"


def save(settings: Settings, report: dict[str, Any]) -> None:
    folder = settings.state / "checks"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    _path(settings, report["kind"], report["item"]).write_text(json.dumps(report, indent=1) + "\n")


def last_reports(settings: Settings) -> list[dict[str, Any]]:
    """The last report of every item that was checked, failing ones first."""
    folder = settings.state / "checks"
    reports = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            reports.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(reports, key=lambda r: (r.get("ok", False), r.get("item", "")))
