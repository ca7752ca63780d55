"""*Try*: one prediction with a catalog module, without a deployment.

The route (``POST /catalog/modules/{id}/try``) hands the form here. The
prediction runs ``oneshot.py`` (the runner, in this folder) in the module's
cached environment, in a private working copy of its repository, as the
asking user's system account: the module's code sees that user's inputs only.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile

from ai4lab.catalog.model import CatalogItem
from ai4lab.core import isolation
from ai4lab.core.envs import EnvBuildError, ensure_env, env_bin
from ai4lab.core.errors import PlatformError
from ai4lab.core.isolation import give_tree
from ai4lab.deploy import module_env, runner, runner_result
from ai4lab.deploy.deepaas import answer_type
from ai4lab.deploy.lifecycle import Platform, Value
from ai4lab.deploy.module_code import working_copy


def _request(form: Any, work: Path) -> tuple[dict[str, str | list[str]], dict[str, dict[str, str | None]]]:
    """The form's fields (repeated ones as lists, as DEEPaaS reads them) and its files, saved in ``work``."""
    fields: dict[str, str | list[str]] = {}
    files: dict[str, dict[str, str | None]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            target = work / f"{len(files)}-{Path(value.filename or 'upload').name}"
            with open(target, "wb") as f:
                shutil.copyfileobj(value.file, f)
            files[name] = {"path": str(target), "filename": value.filename, "content_type": value.content_type}
        elif name in fields:
            before = fields[name]
            fields[name] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            fields[name] = value
    return fields, files


async def try_module(
    platform: Platform, item: CatalogItem, form: Any, owner: str, accept: str = "", max_bytes: int = 2**26
) -> Value:
    """One prediction in the module's environment, run as ``owner``; the module's refusal is its own 4xx."""
    if not item.run.package_path or not item.run.entry_point:
        raise PlatformError(400, f"{item.id} has no local package: deploy its image on a cluster backend")
    settings, local = platform.settings, platform.local
    work = Path(tempfile.mkdtemp(prefix="ai4lab-try-"))
    try:
        fields, files = _request(form, work)
        if (wanted := answer_type(accept)) and "accept" not in fields:
            fields["accept"] = wanted  # as DEEPaaS: the answer's type from the Accept header
        try:
            env = await asyncio.to_thread(ensure_env, Path(item.run.package_path), settings.envs_dir)
        except EnvBuildError as e:
            raise PlatformError(500, f"the module's environment could not be built: {e}") from None
        output = work / "answer"
        request = json.dumps({"model": item.run.entry_point, "fields": fields, "files": files, "output": str(output)})
        ident = await asyncio.to_thread(local.identity, owner)
        give_tree(work, ident)
        repo = await asyncio.to_thread(working_copy, env, work, ident)
        job_env = await asyncio.to_thread(
            module_env, settings, local, owner, env, work, repo=repo, app=item.run.entry_point
        )
        proc = await asyncio.to_thread(
            isolation.run,
            ident,
            [str(env_bin(env, "python")), str(runner(settings, "oneshot.py"))],
            input=request,
            timeout=300,
            cwd=repo,
            env=isolation.user_env(ident, work, job_env),
        )
        result = runner_result(proc.stdout)
        if result is None:
            tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
            raise PlatformError(500, f"the module crashed (exit code {proc.returncode}): {tail}")
        if result["status"] != "OK":
            raise PlatformError(result["code"], result["reason"])
        if "file" in result:  # a non-JSON answer, passed through as DEEPaaS sends it
            try:
                data = await asyncio.to_thread(isolation.read_written_by, output, ident.uid, max_bytes * 4)
            except OSError as e:
                raise PlatformError(500, f"the module's answer could not be read: {e}") from None
            return Value(content=data, content_type=result["content_type"])
        return Value(json={"status": "OK", "predictions": result["predictions"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
