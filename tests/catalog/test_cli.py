"""``ai4lab catalog ...`` as a real subprocess, configured with the git remote catalogs built from the shared data.

``catalog refresh`` runs first; the read-only commands then run concurrently (each
is a new Python process) and the tests check their outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import ai4os_data
from tests.catalog.helpers import DATA, MODULES_SOURCE, raw

AI4LAB = Path(sys.executable).parent / "ai4lab"
BROKEN = DATA / "modules" / "phyto-plankton-classification.yml"
VARIANT = DATA / "variants" / "phyto-plankton-classification.e6a5445.yml"
Result = subprocess.CompletedProcess


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str) -> Result[str]:
        return subprocess.run([str(AI4LAB), "catalog", *args], env=self.env, cwd=self.cwd,
                              capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def cli(rc: ai4os_data.RemoteCatalogs, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    tmp = tmp_path_factory.mktemp("cli")
    config = tmp / "ai4lab.yaml"
    config.write_text(yaml.safe_dump({"catalog_sources": rc.sources()}))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AI4LAB_", "JUPYTERHUB_")) and k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR")}
    env.update(AI4LAB_STATE_DIR=str(tmp / "state"), AI4LAB_CONFIG=str(config), COLUMNS="200")
    return Cli(env=env, cwd=tmp)


@pytest.fixture(scope="module")
def refreshed(cli: Cli) -> Result[str]:
    return cli("refresh")


@pytest.fixture(scope="module")
def valid_files(rc: ai4os_data.RemoteCatalogs) -> list[str]:
    return [str(DATA / e.file) for e in rc.expected if e.valid]


@pytest.fixture(scope="module")
def runs(cli: Cli, refreshed: Result[str], valid_files: list[str]) -> dict[str, Result[str]]:
    folder = cli.cwd / "folders"
    (folder / "item").mkdir(parents=True)
    (folder / "item" / "ai4-metadata.yml").write_bytes((DATA / "tools" / "ai4os-llm.yml").read_bytes())
    (folder / "empty").mkdir()
    commands = {
        "errors": ["errors"],
        "list_modules": ["list", "modules", "--json"],
        "list_tools": ["list", "tools", "--json"],
        "list_gpu": ["list", "modules", "--gpu", "--json"],
        "list_filters": ["list", "modules", "--task", "Computer Vision", "--library", "PyTorch",
                         "--tag", "vo.imagine-ai.eu", "--json"],
        "list_table": ["list", "tools"],
        "list_spaceships": ["list", "spaceships"],
        "list_bad_sort": ["list", "modules", "--sort", "newest"],
        "search_yolo": ["search", "yolo", "--json"],
        "search_tools": ["search", "federated", "--kind", "tools", "--json"],
        "show_demo": ["show", "ai4os-demo-app"],
        "show_llm": ["show", "ai4os-llm", "--kind", "tools", "--json"],
        "show_nope": ["show", "nope"],
        "show_invalid": ["show", "phyto-plankton-classification"],
        "validate_valid": ["validate", *valid_files],
        "validate_broken": ["validate", str(BROKEN)],
        "validate_mixed": ["validate", str(VARIANT), str(BROKEN)],
        "validate_folder": ["validate", str(folder / "item")],
        "validate_missing": ["validate", str(folder / "empty"), str(folder / "nothing.yml")],
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(cli, *args) for name, args in commands.items()}
        return {name: f.result() for name, f in futures.items()}


def test_refresh_prints_counts_and_errors(cli: Cli, refreshed: Result[str]) -> None:
    assert refreshed.returncode == 0, refreshed.stderr
    assert "14 modules, 6 tools; 2 error(s)" in refreshed.stdout
    err = refreshed.stderr
    assert f"{MODULES_SOURCE}/{ai4os_data.MISSING_REPO}:" in err
    assert (f"{MODULES_SOURCE}/phyto-plankton-classification: not valid YAML: mapping values are not allowed here "
            "(line 14, column 30)") in err
    assert (Path(cli.env["AI4LAB_STATE_DIR"]) / "catalog-cache" / MODULES_SOURCE / "status.json").is_file()


def test_errors_command(runs: dict[str, Result[str]]) -> None:
    r = runs["errors"]
    assert r.returncode == 0
    assert f"{MODULES_SOURCE}/phyto-plankton-classification:" in r.stdout
    assert f"{MODULES_SOURCE}/{ai4os_data.MISSING_REPO}:" in r.stdout


def test_list_json(runs: dict[str, Result[str]]) -> None:
    r = runs["list_modules"]
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["total"] == 14 and len(data["items"]) == 14
    titles = [it["title"].lower() for it in data["items"]]
    assert titles == sorted(titles)  # the CLI sorts by title
    tools = json.loads(runs["list_tools"].stdout)
    assert tools["total"] == 6 and {it["source"] for it in tools["items"]} == {"ai4os-tools"}


def test_list_filters(runs: dict[str, Result[str]]) -> None:
    assert {it["id"] for it in json.loads(runs["list_gpu"].stdout)["items"]} == {
        "ai4os-demo-app", "phyto-plankton-classification-e6a5445", "sentinel-data-fusion"}
    assert {it["id"] for it in json.loads(runs["list_filters"].stdout)["items"]} == {
        "ai4os-yolo-torch", "ai4os-fasterrcnn-torch", "socib-rip-currents-detection"}


def test_list_table(runs: dict[str, Result[str]]) -> None:
    r = runs["list_table"]
    assert r.returncode == 0
    assert "6 item(s)" in r.stdout
    for tool_id in ("ai4os-cvat", "ai4os-llm", "ai4os-dev-env"):
        assert tool_id in r.stdout


def test_search_json(runs: dict[str, Result[str]]) -> None:
    r = runs["search_yolo"]
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["items"][0]["id"] == "ai4os-yolo-torch"
    assert data["total"] == 2
    assert {it["id"] for it in json.loads(runs["search_tools"].stdout)["items"]} == {
        "ai4os-federated-server", "ai4os-nvflare"}


def test_show(runs: dict[str, Result[str]]) -> None:
    r = runs["show_demo"]
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "ai4os-demo-app (module ai4os-demo-app, source ai4os-modules)" in out
    assert "A toy application for demo and testing purposes" in out
    assert "image: ai4oshub/ai4os-demo-app:latest" in out
    assert "source_code: https://github.com/ai4os-hub/ai4os-demo-app" in out
    assert "dummy inference" in out  # the description, rendered by rich
    item = json.loads(runs["show_llm"].stdout)
    assert (item["id"], item["kind"], item["run"]["docker_image"]) == ("ai4os-llm", "tool", "vllm/vllm-openai")


def test_show_unknown(runs: dict[str, Result[str]]) -> None:
    r = runs["show_nope"]
    assert r.returncode == 1
    assert "error:" in r.stderr and "'nope'" in r.stderr
    assert r.stdout == ""
    assert runs["show_invalid"].returncode == 1  # an invalid item is not in the catalog


def test_unknown_kind(runs: dict[str, Result[str]]) -> None:
    r = runs["list_spaceships"]
    assert r.returncode != 0
    assert "error:" in r.stderr and "unknown kind 'spaceships'" in r.stderr


def test_unknown_sort(runs: dict[str, Result[str]]) -> None:
    r = runs["list_bad_sort"]
    assert r.returncode == 2 and "unknown sort 'newest'" in r.stderr


def test_validate_every_valid_file(runs: dict[str, Result[str]], valid_files: list[str]) -> None:
    assert len(valid_files) == 20
    r = runs["validate_valid"]
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 20
    for path, line in zip(valid_files, lines):
        assert line.startswith(f"{path}: valid against schema 2.3.0"), line
        assert line.endswith(raw(path.removeprefix(f"{DATA}/"))["title"])
        assert ("(v1, converted)" in line) == path.endswith(".metadata.json")


def test_validate_broken_file(runs: dict[str, Result[str]]) -> None:
    r = runs["validate_broken"]
    assert r.returncode == 1
    assert f"{BROKEN}: invalid: not valid YAML: mapping values are not allowed here (line 14, column 30)" in r.stderr
    assert r.stdout == ""
    # with a valid one: still exit 1, the valid one is reported as valid
    r = runs["validate_mixed"]
    assert r.returncode == 1
    assert f"{VARIANT}: valid" in r.stdout and f"{BROKEN}: invalid" in r.stderr


def test_validate_folder_and_missing(runs: dict[str, Result[str]]) -> None:
    r = runs["validate_folder"]
    assert r.returncode == 0 and "valid against schema" in r.stdout and "Deploy your LLM" in r.stdout
    r = runs["validate_missing"]
    assert r.returncode == 1
    assert r.stderr.count("no metadata file found") == 2
