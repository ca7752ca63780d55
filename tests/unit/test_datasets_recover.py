"""A platform restart during a dataset import: ended imports are read back, half-done downloads removed,
one caught starting is started again and completes (a real download, as the owner, from a fake Zenodo)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from ai4lab.backends.local import LocalBackend
from ai4lab.core import db
from ai4lab.core import deployments as deps
from ai4lab.core.isolation import give, private_dir
from ai4lab.core.settings import Settings
from ai4lab.deploy.datasets import DatasetImports, resolve_zenodo
from ai4lab.deploy.lifecycle import Platform
from tests.fakes.zenodo import FakeZenodoServer, Record


async def test_recover_after_restart(reachable_tmp: Path) -> None:
    with FakeZenodoServer() as zenodo:
        zenodo.fake.add(Record(id=41, title="Recovered", files={"r.csv": b"a,b\n1,2\n"}))
        settings = Settings(state_dir=reachable_tmp / "state", zenodo_url=zenodo.url)
        db.upgrade(settings.db_url)
        backend = LocalBackend()
        ident = backend.identity("ann")
        imports = DatasetImports(Platform.for_settings(settings, backend))
        resolved = resolve_zenodo(41, zenodo.url)

        def make(name: str, status: str, state: dict) -> str:
            spec = {"source": "10.5281/zenodo.41", "title": "Recovered", "dataset": f"datasets/{name}",
                    "replace": False, "record": 41, "files": resolved.files,
                    "card": {**resolved.card, "name": name, "path": f"datasets/{name}", "imported_by": "ann"}}
            dep = deps.create(settings.db_url, owner="ann", kind="dataset", name=name, spec=spec, status=status)
            if state:
                deps.set_status(settings.db_url, dep.id, status, backend_state=state)
            return dep.id

        def tmp_of(dep_id: str) -> Path:
            path = settings.user_storage("ann") / "datasets" / f".import-{dep_id}"
            private_dir(path, ident, settings.storage_root)
            (path / "half.bin").write_bytes(b"half")
            return path

        done_result = reachable_tmp / "done.json"
        done_result.write_text(json.dumps({"output": {"path": "datasets/done", "files": 1, "bytes": 8}}))
        give(done_result, ident)  # written by the job, as its owner (anything else is not read)
        done = make("done", "running", {"pid": 2**22 - 9, "create_time": time.time(), "result": str(done_result)})
        gone = make("gone", "running", {"pid": 2**22 - 7, "create_time": time.time(),
                                        "result": str(reachable_tmp / "none.json")})
        caught = make("caught", "starting", {})
        leftovers = [tmp_of(done), tmp_of(gone), tmp_of(caught)]

        await imports.recover()
        assert deps.get(settings.db_url, done).status == "succeeded"
        failed = deps.get(settings.db_url, gone)
        assert failed.status == "failed" and "ended without a result" in failed.status_reason
        assert not any(p.exists() for p in leftovers)
        # the one caught starting runs again, from scratch, to the end
        deadline = time.monotonic() + 60
        while deps.get(settings.db_url, caught).status in ("starting", "running") and time.monotonic() < deadline:
            await imports.watch()
            await asyncio.sleep(0.2)
        again = deps.get(settings.db_url, caught)
        assert again.status == "succeeded", again.status_reason
        folder = settings.user_storage("ann") / "datasets" / "caught"
        assert (folder / "r.csv").read_bytes() == b"a,b\n1,2\n" and (folder / "DATASET.md").is_file()
