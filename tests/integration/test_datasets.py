"""Datasets by DOI or URL: imports from a fake Zenodo (a real local HTTP server) into users' storage.

The platform's ``zenodo_url`` points at ``tests/fakes/zenodo.py`` (the session's
``fake_zenodo``); each test adds the records it imports. The downloads are real
jobs of the local backend, run as the users' system accounts.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ai4lab.client import Client
from ai4lab.client.widgets import TrainingLauncher
from ai4lab.core.envs import ensure_env, env_bin
from ai4lab.core.settings import bundled_catalog_path
from tests.fakes.zenodo import Record
from tests.platform_harness import Platform, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"


def wait_ended(api: httpx.Client, dep_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = api.get(f"{API}/deployments/{dep_id}").json()
        if dep["status"] not in ("queued", "starting", "running"):
            return dep
        time.sleep(0.2)
    raise TimeoutError(f"{dep_id} still {dep['status']}")


def in_storage(platform: Platform, user: str, rel: str = "") -> Path:
    return platform.state / "storage" / user / rel


def leftovers(platform: Platform, user: str) -> list[str]:
    """What an import may leave behind in datasets/: its hidden download folders."""
    folder = in_storage(platform, user, "datasets")
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


@pytest.fixture(scope="module")
def dana(platform: Platform) -> httpx.Client:
    """An intermediate user: she imports datasets and trains on them."""
    platform.add_user("dana", "dana-password", role="intermediate")
    return platform.api(platform.token("dana"))


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """300 digits as a CSV (64 pixel columns + label), written by the digits module's own helper."""
    env = ensure_env(bundled_catalog_path() / "modules" / "ai4lab-digits")
    path = tmp_path_factory.mktemp("digits-csv") / "digits.csv"
    subprocess.run([str(env_bin(env, "python")), "-c",
                    "import sys; from ai4lab_digits.data import write_csv; write_csv(sys.argv[1], n=300)", str(path)],
                   check=True, capture_output=True)
    return path.read_bytes()


def test_a_zenodo_doi_is_imported_with_progress_and_a_card(platform: Platform, fake_zenodo: Any, dana: httpx.Client,
                                                            digits_csv: bytes) -> None:
    big = os.urandom(600_000)
    fake_zenodo.fake.add(Record(id=7001, title="Handwritten Digits (8x8), CSV", rate=200_000,
                                files={"digits.csv": digits_csv, "extra.bin": big}))
    r = dana.post(f"{API}/datasets", json={"source": "10.5281/zenodo.7001"})
    assert r.status_code == 201, r.text
    dep = r.json()
    assert (dep["kind"], dep["name"], dep["owner"]) == ("dataset", "handwritten-digits-8x8-csv", "dana")
    assert dep["spec"]["dataset"] == "datasets/handwritten-digits-8x8-csv"
    # progress while it runs: bytes and files, done of total
    total = len(digits_csv) + len(big)
    seen = wait_until(lambda: (dana.get(f"{API}/deployments/{dep['id']}").json().get("progress") or {}), 15,
                      "no progress reported")
    assert seen["total"] == seen["bytes_total"] == total and seen["files_total"] == 2
    mid = wait_until(lambda: (p := dana.get(f"{API}/deployments/{dep['id']}").json().get("progress")) and
                     0 < p["bytes_done"] < total and p, 15, "no progress in the middle of the download")
    assert mid["files_done"] <= 1
    # it shows among the deployments while it runs; nothing is in datasets/<name> before it ends
    assert dep["id"] in [d["id"] for d in dana.get(f"{API}/deployments", params={"kind": "dataset"}).json()]
    assert not in_storage(platform, "dana", dep["spec"]["dataset"]).exists()
    done = wait_ended(dana, dep["id"])
    assert done["status"] == "succeeded", done["status_reason"]
    assert done["progress"] == {"done": total, "total": total, "files_done": 2, "files_total": 2,
                                "bytes_done": total, "bytes_total": total}
    assert done["endpoints"]["dataset"] == "datasets/handwritten-digits-8x8-csv" and done["endpoints"]["files"] == 2
    # the files, through the storage API, with their content
    path = done["endpoints"]["dataset"]
    assert dana.get(f"{API}/storage/{path}/digits.csv").content == digits_csv
    assert dana.get(f"{API}/storage/{path}/extra.bin").content == big
    folder = in_storage(platform, "dana", path)
    owner = in_storage(platform, "dana").stat().st_uid
    assert {p.stat().st_uid for p in folder.iterdir()} == {owner}  # written as her, not as the platform
    # the card: where it came from
    card = json.loads(dana.get(f"{API}/storage/{path}/dataset.json").content)
    assert card["doi"] == "10.5281/zenodo.7001" and card["title"] == "Handwritten Digits (8x8), CSV"
    assert card["creators"] == ["Doe, Jane", "Roe, Richard"] and card["license"] == "cc-by-4.0"
    assert card["version"] == "1.0" and card["imported_at"] and card["source"] == "zenodo:7001"
    assert {f["key"]: f["md5"] for f in card["files"]} == {"digits.csv": hashlib.md5(digits_csv).hexdigest(),
                                                             "extra.bin": hashlib.md5(big).hexdigest()}
    assert card["files"][0]["sha256"] == hashlib.sha256(digits_csv).hexdigest()
    md = dana.get(f"{API}/storage/{path}/DATASET.md").text
    assert "# Handwritten Digits (8x8), CSV" in md and "https://doi.org/10.5281/zenodo.7001" in md
    assert "cc-by-4.0" in md and hashlib.md5(big).hexdigest() in md
    # GET /datasets lists it with its card; the log says what happened
    listed = {d["path"]: d for d in dana.get(f"{API}/datasets").json()}
    assert listed[path]["files"] == 2 and listed[path]["bytes"] == total
    assert listed[path]["card"]["doi"] == "10.5281/zenodo.7001"
    log = dana.get(f"{API}/deployments/{dep['id']}/logs").text
    assert "digits.csv" in log and "ready" in log
    assert leftovers(platform, "dana") == []


def test_names_clashes_and_bad_sources(platform: Platform, fake_zenodo: Any, dana: httpx.Client) -> None:
    fake_zenodo.fake.add(Record(id=7002, title="Tiny", files={"a.txt": b"first"}))
    r = dana.post(f"{API}/datasets", json={"source": "https://zenodo.org/records/7002", "name": "tiny"})
    assert r.status_code == 201, r.text
    assert wait_ended(dana, r.json()["id"])["status"] == "succeeded"
    before = len(dana.get(f"{API}/deployments").json())
    # the same name again: 409, nothing recorded, the dataset untouched
    r = dana.post(f"{API}/datasets", json={"source": "10.5281/zenodo.7002", "name": "tiny"})
    assert r.status_code == 409 and "replace" in r.json()["detail"]
    fake_zenodo.fake.records[7002].files["a.txt"] = b"second"
    r = dana.post(f"{API}/datasets", json={"source": "doi:10.5281/zenodo.7002", "name": "tiny", "replace": True})
    assert r.status_code == 201, r.text
    assert wait_ended(dana, r.json()["id"])["status"] == "succeeded"
    assert dana.get(f"{API}/storage/datasets/tiny/a.txt").content == b"second"
    before += 1
    # bad sources and names, a record too large for the disk: 4xx/507 with the reason, nothing recorded
    fake_zenodo.fake.add(Record(id=7009, title="Huge", files={"huge.bin": b"x"}, wrong_size={"huge.bin": 10**16}))
    for body, status, words in [
        ({"source": "10.5281/zenodo.7009"}, 507, "storage quota exceeded"),
        ({"source": "10.1234/not-zenodo"}, 400, "only Zenodo DOIs"),
        ({"source": "hello"}, 400, "neither a DOI nor a URL"),
        ({"source": "http://example.org/data.csv"}, 400, "not HTTPS"),
        ({"source": "10.5281/zenodo.999999"}, 404, "no Zenodo record 999999"),
        ({"source": "10.5281/zenodo.7002", "name": "../escape"}, 400, "one folder name"),
        ({"source": "10.5281/zenodo.7002", "md5": "0" * 32}, 400, "own checksums"),
    ]:
        r = dana.post(f"{API}/datasets", json=body)
        assert r.status_code == status and words in r.json()["detail"], (body, r.text)
    r = dana.post(f"{API}/datasets", json={"source": "https://x.org/a", "sha256": "nothex"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "sha256"]
    r = dana.post(f"{API}/datasets", json={"sorce": "10.5281/zenodo.7002"})
    assert r.status_code == 422
    assert len(dana.get(f"{API}/deployments").json()) == before


def test_a_checksum_mismatch_fails_clearly_and_leaves_nothing(platform: Platform, fake_zenodo: Any,
                                                              dana: httpx.Client) -> None:
    good, bad = b"a,b\n1,2\n", b"x" * 5000
    wrong = "0123456789abcdef0123456789abcdef"
    fake_zenodo.fake.add(Record(id=7003, title="Corrupted", files={"good.csv": good, "bad.bin": bad},
                                wrong_md5={"bad.bin": wrong}))
    r = dana.post(f"{API}/deployments", json={"kind": "dataset", "source": "10.5281/zenodo.7003"})
    assert r.status_code == 201, r.text
    dep = wait_ended(dana, r.json()["id"])
    assert dep["status"] == "failed"
    reason = dep["status_reason"]
    assert "bad.bin" in reason and wrong in reason and hashlib.md5(bad).hexdigest() in reason, reason
    assert "mismatch" in reason
    assert not in_storage(platform, "dana", "datasets/corrupted").exists()
    assert leftovers(platform, "dana") == []
    assert "datasets/corrupted" not in [d["path"] for d in dana.get(f"{API}/datasets").json()]


def test_a_plain_url_with_its_checksum(platform: Platform, fake_zenodo: Any, dana: httpx.Client) -> None:
    content = b"plain file\n" * 100
    fake_zenodo.fake.add(Record(id=7004, title="Plain", files={"notes.txt": content}))
    url = f"{fake_zenodo.url}/api/records/7004/files/notes.txt/content"
    r = dana.post(f"{API}/datasets", json={"source": url, "name": "notes", "sha256": "f" * 64})
    dep = wait_ended(dana, r.json()["id"])
    assert dep["status"] == "failed" and "sha256 checksum mismatch" in dep["status_reason"]
    r = dana.post(f"{API}/datasets", json={"source": url, "name": "notes",
                                           "sha256": hashlib.sha256(content).hexdigest()})
    dep = wait_ended(dana, r.json()["id"])
    assert dep["status"] == "succeeded", dep["status_reason"]
    assert dana.get(f"{API}/storage/datasets/notes/content").content == content
    card = json.loads(dana.get(f"{API}/storage/datasets/notes/dataset.json").content)
    assert card["source"] == url and card["files"][0]["sha256"] == hashlib.sha256(content).hexdigest()


def test_a_cancel_leaves_nothing_and_others_cannot_touch_it(platform: Platform, fake_zenodo: Any,
                                                            dana: httpx.Client) -> None:
    fake_zenodo.fake.add(Record(id=7005, title="Slow", rate=100_000, files={"slow.bin": os.urandom(3_000_000)}))
    r = dana.post(f"{API}/datasets", json={"source": "10.5281/zenodo.7005"})
    assert r.status_code == 201, r.text
    dep = r.json()
    wait_until(lambda: ((dana.get(f"{API}/deployments/{dep['id']}").json().get("progress") or {})
                        .get("bytes_done", 0) > 0), 20, "the download did not start")
    assert leftovers(platform, "dana") == [f".import-{dep['id']}"]  # it downloads beside the target
    runners = [p for p in psutil.process_iter(["cmdline"])
               if f"deployments/{dep['id']}/request.json" in " ".join(p.info["cmdline"] or [])]
    assert runners and all(p.uids().real == in_storage(platform, "dana").stat().st_uid for p in runners)
    # another user neither sees nor stops it, nor sees dana's datasets
    platform.add_user("omar", "omar-password", role="advanced")
    omar = platform.api(platform.token("omar"))
    assert omar.get(f"{API}/deployments/{dep['id']}").status_code == 404
    assert omar.delete(f"{API}/deployments/{dep['id']}").status_code == 404
    assert omar.get(f"{API}/deployments/{dep['id']}/logs").status_code == 404
    assert dep["id"] not in [d["id"] for d in omar.get(f"{API}/deployments").json()]
    assert omar.get(f"{API}/datasets").json() == []
    assert dana.get(f"{API}/deployments/{dep['id']}").json()["status"] == "running"
    # at most two imports of hers at once (dataset_imports): a third is refused
    second = dana.post(f"{API}/datasets", json={"source": "10.5281/zenodo.7005", "name": "slow-too"}).json()
    r = dana.post(f"{API}/datasets", json={"source": "10.5281/zenodo.7005", "name": "slow-three"})
    assert r.status_code == 429 and "at most 2 at once" in r.json()["detail"]
    assert dana.delete(f"{API}/deployments/{second['id']}").json()["status"] == "cancelled"
    # dana cancels it: the process ends, nothing is left
    r = dana.delete(f"{API}/deployments/{dep['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    _, alive = psutil.wait_procs(runners, timeout=15)
    assert alive == []
    assert not in_storage(platform, "dana", "datasets/slow").exists()
    assert leftovers(platform, "dana") == []


def test_a_training_uses_an_imported_dataset(platform: Platform, fake_zenodo: Any, dana: httpx.Client,
                                             digits_csv: bytes) -> None:
    fake_zenodo.fake.add(Record(id=7006, title="Digits for training", files={"digits.csv": digits_csv}))
    r = dana.post(f"{API}/datasets", json={"source": "https://zenodo.org/records/7006"})
    imported = wait_ended(dana, r.json()["id"])
    assert imported["status"] == "succeeded", imported["status_reason"]
    path = imported["endpoints"]["dataset"]
    # the training form's pickers offer it: the notebook widget (the Lab panel's is tested in its suite)
    launcher = TrainingLauncher(Client(f"{platform.url}{API}", platform.token("dana")), "ai4lab-digits",
                                auto_poll=False)
    assert {path, f"{path}/digits.csv"} <= set(launcher.dataset.options)
    r = dana.post(f"{API}/deployments", json={"kind": "training", "item": "ai4lab-digits",
                                              "dataset": f"{path}/digits.csv", "args": {"epochs": 2}})
    assert r.status_code == 201, r.text
    trained = wait_ended(dana, r.json()["id"], timeout=300)
    assert trained["status"] == "succeeded", trained["status_reason"]
    assert trained["spec"]["dataset"] == f"{path}/digits.csv"
    names = {e["name"] for e in dana.get(f"{API}/storage/models/ai4lab-digits/{trained['id']}").json()["content"]}
    assert "model.joblib" in names


def test_cli_import_and_ls(platform: Platform, fake_zenodo: Any, dana: httpx.Client) -> None:
    fake_zenodo.fake.add(Record(id=7007, title="From the CLI", files={"cli.txt": b"hello"}))
    env = {**platform.env, "AI4LAB_API_URL": f"{platform.url}{API}",
           "AI4LAB_API_TOKEN": dana.headers["Authorization"].split()[1]}
    cli = str(Path(sys.executable).parent / "ai4lab")
    run = lambda *a: subprocess.run([cli, *a], env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run("datasets", "import", "10.5281/zenodo.7007", "--name", "from-cli", "--wait")
    assert r.returncode == 0, r.stderr
    dep_id, status, path = r.stdout.split()[:3]
    assert (status, path) == ("succeeded", "datasets/from-cli")
    r = run("datasets", "ls", "--json")
    assert r.returncode == 0 and "datasets/from-cli" in [d["path"] for d in json.loads(r.stdout)]
    r = run("datasets", "import", "10.5281/zenodo.7007", "--name", "from-cli")
    assert r.returncode == 1 and r.stderr.startswith("error: 409:") and len(r.stderr.strip().splitlines()) == 1
    r = run("datasets", "import", "not a doi")
    assert r.returncode == 1 and "neither a DOI nor a URL" in r.stderr
