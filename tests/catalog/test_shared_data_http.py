"""The shared AI4OS data through the "http" source type: raw files served by a local HTTP server.

The server mimics raw.githubusercontent.com: ``/{org}/{repo}/{branch}/{file}``. The
catalogs' ``.gitmodules`` list GitHub URLs (with the real quirks: some end in ``.git``,
some in ``/``, some name no branch), and ``raw_url_template`` maps them to the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ai4lab.catalog import Catalog
from ai4lab.core.settings import SourceConfig
from tests import ai4os_data
from tests.catalog.conftest import new_db
from tests.catalog.helpers import (
    MODULES_SOURCE, TOOLS_SOURCE, CatalogEnv, all_ids, expected_reason_parts, manifest_entry, raw, serve_folder,
    source_of,
)

CATALOG_REPOS = {"module": ("ai4os-hub", "modules-catalog"), "tool": ("ai4os", "tools-catalog")}


@dataclass
class HttpCatalogs:
    base: str
    root: Path

    def sources(self, **overrides: str) -> list[SourceConfig]:
        template = f"{self.base}/{{org}}/{{repo}}/{{branch}}/{{file}}"
        out = []
        for kind, name in (("module", MODULES_SOURCE), ("tool", TOOLS_SOURCE)):
            org, repo = CATALOG_REPOS[kind]
            url = overrides.get(kind, f"{self.base}/{org}/{repo}/master")
            out.append(SourceConfig(name=name, type="http", kind=kind, url=url, raw_url_template=template))
        return out


def write_tree(root: Path, expected: list[ai4os_data.Expected]) -> None:
    lines: dict[str, list[str]] = {"module": [], "tool": []}
    for n, exp in enumerate(expected):
        entry = manifest_entry(exp.file)
        org = entry["source_repo"].split("/")[0]
        branch = entry["branch"]
        name = "metadata.json" if exp.file.startswith("legacy/") else "ai4-metadata.yml"
        target = root / org / exp.item_id / branch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ai4os_data.DATA / exp.file).read_bytes())
        url = f"https://github.com/{org}/{exp.item_id}" + ("", ".git", "/")[n % 3]
        lines[exp.kind] += [f'[submodule "{exp.item_id}"]', f"\tpath = {exp.item_id}", f"\turl = {url}"]
        if branch != "master":
            lines[exp.kind].append(f"\tbranch = {branch}")
    lines["module"] += [f'[submodule "{ai4os_data.MISSING_REPO}"]', f"\tpath = {ai4os_data.MISSING_REPO}",
                        f"\turl = https://github.com/nowhere/{ai4os_data.MISSING_REPO}.git", "\tbranch = main"]
    for kind, (org, repo) in CATALOG_REPOS.items():
        folder = root / org / repo / "master"
        folder.mkdir(parents=True)
        (folder / ".gitmodules").write_text("\n".join(lines[kind]) + "\n")


@pytest.fixture(scope="module")
def served(rc: ai4os_data.RemoteCatalogs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpCatalogs]:
    root = tmp_path_factory.mktemp("raw-files")
    write_tree(root, rc.expected)
    with serve_folder(root) as base:
        yield HttpCatalogs(base=base, root=root)


@pytest.fixture(scope="module")
def http_env(served: HttpCatalogs, tmp_path_factory: pytest.TempPathFactory) -> CatalogEnv:
    work = tmp_path_factory.mktemp("http-catalog")
    url = new_db(work)
    sources = served.sources()
    catalog = Catalog(sources, work / "cache", url)
    errors = catalog.refresh()
    return CatalogEnv(catalog=catalog, sources=sources, cache=work / "cache", db_url=url, refresh_errors=errors)


def test_report_every_shared_file(rc: ai4os_data.RemoteCatalogs, http_env: CatalogEnv) -> None:
    mismatches = []
    print(f"\n[http] {'file':55} {'expected':9} observed")
    for exp in rc.expected:
        item = http_env.catalog.get(exp.kind, exp.item_id)  # type: ignore[arg-type]
        errs = [e.reason for e in http_env.catalog.errors() if e.item == exp.item_id]
        observed = f"item: {item.title}" if item else f"error: {errs[0]}" if errs else "missing"
        ok = (item is not None) == exp.valid
        print(f"[http] {exp.file:55} {'valid' if exp.valid else 'INVALID':9} {observed[:70]}"
              f"{'' if ok else '   <-- MISMATCH'}")
        if not ok:
            mismatches.append((exp.file, observed))
    assert mismatches == []


def test_valid_files_are_items(rc: ai4os_data.RemoteCatalogs, http_env: CatalogEnv) -> None:
    for exp in rc.expected:
        if not exp.valid:
            continue
        item = http_env.catalog.get(exp.kind, exp.item_id)  # type: ignore[arg-type]
        assert item is not None, exp.file
        assert (item.kind, item.id, item.title, item.source) == (
            exp.kind, exp.item_id, raw(exp.file)["title"], source_of(exp.kind))
    for kind in ("module", "tool"):
        assert set(all_ids(http_env.catalog, kind)) == {e.item_id for e in rc.expected if e.valid and e.kind == kind}


def test_branches_and_url_quirks(http_env: CatalogEnv) -> None:
    # ai4os-cvat lives on branch v2.7.3-AI4OS; ai4os-llm has no branch in .gitmodules (master)
    assert http_env.catalog.get("tool", "ai4os-cvat") is not None
    assert http_env.catalog.get("tool", "ai4os-llm") is not None
    # DEEP-OC-mods is on master in org deephdc
    assert http_env.catalog.get("module", "DEEP-OC-mods") is not None


def test_invalid_and_missing_are_error_entries(rc: ai4os_data.RemoteCatalogs, http_env: CatalogEnv) -> None:
    errors = http_env.catalog.errors()
    assert sorted((e.source, e.item) for e in errors) == [
        (MODULES_SOURCE, ai4os_data.MISSING_REPO), (MODULES_SOURCE, "phyto-plankton-classification"),
    ]
    phyto_exp = next(e for e in rc.expected if not e.valid)
    phyto = next(e for e in errors if e.item == phyto_exp.item_id)
    for part in expected_reason_parts(phyto_exp.reason):
        assert part in phyto.reason
    gone = next(e for e in errors if e.item == ai4os_data.MISSING_REPO)
    assert "nowhere/gone-module" in gone.reason and "main" in gone.reason
    assert gone.location == f"https://github.com/nowhere/{ai4os_data.MISSING_REPO}.git"


def test_legacy_files_are_converted(http_env: CatalogEnv) -> None:
    for item_id in ("ai4os-demo-app-v1", "DEEP-OC-mods-v1"):
        item = http_env.catalog.get("module", item_id)
        assert item is not None and isinstance(item.description, str) and item.description


def test_http_and_git_give_the_same_items(http_env: CatalogEnv, git_env: CatalogEnv) -> None:
    for kind in ("module", "tool"):
        ids = all_ids(git_env.catalog, kind)
        assert sorted(all_ids(http_env.catalog, kind)) == sorted(ids)
        for item_id in ids:
            a = git_env.catalog.get(kind, item_id)  # type: ignore[arg-type]
            b = http_env.catalog.get(kind, item_id)  # type: ignore[arg-type]
            assert a is not None and b is not None
            skip = {"metadata", "updated", "source"}  # updated: converted v1 items are stamped at load time
            assert a.model_dump(exclude=skip) == b.model_dump(exclude=skip), item_id


def test_unreachable_catalog_keeps_the_last_good_items(served: HttpCatalogs, http_env: CatalogEnv) -> None:
    before = {k: sorted(all_ids(http_env.catalog, k)) for k in ("module", "tool")}
    # same names and cache, the modules catalog now on a path that does not exist, tools on a dead port
    broken = served.sources(module=f"{served.base}/ai4os-hub/no-such-catalog/master", tool="http://127.0.0.1:1/x")
    catalog = Catalog(broken, http_env.cache, http_env.db_url)
    errors = catalog.refresh()
    assert {k: sorted(all_ids(catalog, k)) for k in ("module", "tool")} == before
    top = {e.source: e for e in errors if e.item == "*"}
    assert set(top) == {MODULES_SOURCE, TOOLS_SOURCE}
    assert "cannot read the catalog" in top[MODULES_SOURCE].reason
    assert "no-such-catalog" in top[MODULES_SOURCE].reason and "404" in top[MODULES_SOURCE].reason
    assert "http://127.0.0.1:1/x" in top[TOOLS_SOURCE].reason
    # the item-level errors of the last good fetch are still reported
    assert {e.item for e in errors if e.source == MODULES_SOURCE} == {
        "*", ai4os_data.MISSING_REPO, "phyto-plankton-classification"}
    # and a good refresh clears the source-level error again
    good = Catalog(served.sources(), http_env.cache, http_env.db_url)
    assert [e for e in good.refresh() if e.item == "*"] == []
