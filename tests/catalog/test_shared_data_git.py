"""Every file of the shared AI4OS data, read through git remote catalogs in the AI4OS layout."""

from __future__ import annotations

import pytest

from ai4lab.catalog import metadata as md
from tests import ai4os_data
from tests.catalog.helpers import (
    MODULES_SOURCE, TOOLS_SOURCE, CatalogEnv, all_ids, expected_reason_parts, raw, source_of,
)


def observe(env: CatalogEnv, exp: ai4os_data.Expected) -> tuple[str, str]:
    """('item', title) or ('error', reason) or ('missing', '') for one expected entry."""
    item = env.catalog.get(exp.kind, exp.item_id)  # type: ignore[arg-type]
    errs = [e for e in env.catalog.errors() if e.item == exp.item_id]
    if item is not None:
        return "item", item.title
    if errs:
        return "error", errs[0].reason
    return "missing", ""


def test_report_every_shared_file(rc: ai4os_data.RemoteCatalogs, git_env: CatalogEnv) -> None:
    """One line per file (visible with -s); the report must match the manifest's validation results."""
    assert len(rc.expected) == 21  # 12 modules, 6 tools, 1 variant, 2 legacy files
    mismatches = []
    print(f"\n{'file':55} {'id':40} {'expected':9} observed")
    for exp in rc.expected:
        what, detail = observe(git_env, exp)
        ok = (what == "item") == exp.valid
        print(f"{exp.file:55} {exp.item_id:40} {'valid' if exp.valid else 'INVALID':9} "
              f"{what}: {detail[:70]}{'' if ok else '   <-- MISMATCH'}")
        if not ok:
            mismatches.append((exp.file, what, detail))
    assert mismatches == []


def _expected(rc: ai4os_data.RemoteCatalogs, valid: bool) -> list[ai4os_data.Expected]:
    return [e for e in rc.expected if e.valid == valid]


def test_valid_files_are_items(rc: ai4os_data.RemoteCatalogs, git_env: CatalogEnv) -> None:
    valid = _expected(rc, True)
    assert len(valid) == 20
    for exp in valid:
        item = git_env.catalog.get(exp.kind, exp.item_id)  # type: ignore[arg-type]
        assert item is not None, exp.file
        data = raw(exp.file)
        assert item.kind == exp.kind
        assert item.id == exp.item_id
        assert item.title == data["title"], exp.file
        assert item.summary == data["summary"], exp.file
        assert item.source == source_of(exp.kind)
        assert item.visibility == "public" and item.owner is None
        assert isinstance(item.description, str) and item.description
        if not exp.file.startswith("legacy/"):
            assert item.tasks == data["tasks"]
            assert item.categories == data["categories"]
            assert item.tags == [str(t) for t in data["tags"]]
            assert item.libraries == data["libraries"]
            assert item.data_types == (data.get("data-type") or [])
            assert item.description == str(data["description"])
            assert item.updated == data["dates"]["updated"]
            assert item.created == data["dates"]["created"]
            assert item.metadata_version == str(data["metadata_version"])
            assert item.metadata == data


def test_item_sets_are_exactly_the_valid_files(rc: ai4os_data.RemoteCatalogs, git_env: CatalogEnv) -> None:
    for kind, source in (("module", MODULES_SOURCE), ("tool", TOOLS_SOURCE)):
        want = {e.item_id for e in rc.expected if e.kind == kind and e.valid}
        got = all_ids(git_env.catalog, kind)
        assert len(got) == len(set(got))
        assert set(got) == want
        assert set(all_ids(git_env.catalog, kind, source=source)) == want
    assert len(all_ids(git_env.catalog, "module")) == 14
    assert len(all_ids(git_env.catalog, "tool")) == 6


def test_invalid_files_are_error_entries_with_the_validators_reason(
    rc: ai4os_data.RemoteCatalogs, git_env: CatalogEnv
) -> None:
    invalid = _expected(rc, False)
    assert [e.item_id for e in invalid] == ["phyto-plankton-classification"]
    for exp in invalid:
        assert git_env.catalog.get(exp.kind, exp.item_id) is None  # type: ignore[arg-type]
        errs = [e for e in git_env.catalog.errors() if e.item == exp.item_id]
        assert len(errs) == 1, errs
        assert errs[0].source == source_of(exp.kind)
        for part in expected_reason_parts(exp.reason):
            assert part in errs[0].reason, (part, errs[0].reason)
    phyto = next(e for e in git_env.catalog.errors() if e.item == "phyto-plankton-classification")
    assert "mapping values are not allowed here" in phyto.reason
    assert "line 14" in phyto.reason


def test_refresh_returns_the_same_errors_as_errors(git_env: CatalogEnv) -> None:
    assert [e.model_dump() for e in git_env.refresh_errors] == [e.model_dump() for e in git_env.catalog.errors()]
    # exactly the broken YAML file and the missing repository; the tools catalog is clean
    assert sorted((e.source, e.item) for e in git_env.catalog.errors()) == [
        (MODULES_SOURCE, ai4os_data.MISSING_REPO), (MODULES_SOURCE, "phyto-plankton-classification"),
    ]


def test_missing_repository_is_an_error_and_does_not_stop_the_others(git_env: CatalogEnv) -> None:
    gone = [e for e in git_env.catalog.errors() if e.item == ai4os_data.MISSING_REPO]
    assert len(gone) == 1
    assert gone[0].source == MODULES_SOURCE
    assert "nowhere/gone-module" in gone[0].location
    assert "gone-module" in gone[0].reason and "git repository" in gone[0].reason
    assert git_env.catalog.get("module", ai4os_data.MISSING_REPO) is None
    # listed after every other module in .gitmodules, and everything before it loaded
    assert len(all_ids(git_env.catalog, "module")) == 14


@pytest.mark.parametrize("item_id,file", [
    ("ai4os-demo-app-v1", "legacy/ai4os-demo-app.metadata.json"),
    ("DEEP-OC-mods-v1", "legacy/DEEP-OC-mods.metadata.json"),
])
def test_legacy_v1_files_are_converted(git_env: CatalogEnv, item_id: str, file: str) -> None:
    v1 = raw(file)
    assert isinstance(v1["description"], list) and "metadata_version" not in v1
    item = git_env.catalog.get("module", item_id)
    assert item is not None
    assert isinstance(item.description, str)
    assert item.description == " ".join(v1["description"])
    assert item.title == v1["title"]
    assert item.tags == v1["keywords"]
    assert item.metadata_version == md.schema_version()
    assert item.created == v1["date_creation"]
    assert item.links["docker_image"] == v1["sources"]["docker_registry_repo"]
    assert item.run.docker_image == v1["sources"]["docker_registry_repo"]
    assert item.run.docker_tag == "latest"


def test_docker_images_of_real_items(git_env: CatalogEnv) -> None:
    demo = git_env.catalog.get("module", "ai4os-demo-app")
    assert demo is not None and (demo.run.docker_image, demo.run.docker_tag) == ("ai4oshub/ai4os-demo-app", "latest")
    llm = git_env.catalog.get("tool", "ai4os-llm")  # tag included in links.docker_image
    assert llm is not None and (llm.run.docker_image, llm.run.docker_tag) == ("vllm/vllm-openai", "latest")
    nvflare = git_env.catalog.get("tool", "ai4os-nvflare")  # another registry
    assert nvflare is not None
    assert nvflare.run.docker_image == "registry.services.ai4os.eu/ai4os/ai4os-nvflare-dashboard"
    # remote items have no local package
    assert demo.run.package_path is None and demo.run.entry_point is None


def test_resources_of_real_items(git_env: CatalogEnv) -> None:
    demo = git_env.catalog.get("module", "ai4os-demo-app")
    assert demo is not None
    r = demo.resources_inference
    assert (r.cpu, r.gpu, r.ram_mb, r.gpu_memory_mb, r.gpu_compute_capability, r.disk_mb) == (2, 1, 1000, 1000, 100.0, 1000)
    assert demo.resources_training.cpu is None
    phyto = git_env.catalog.get("module", "phyto-plankton-classification-e6a5445")
    assert phyto is not None
    t = phyto.resources_training
    assert (t.cpu, t.gpu, t.ram_mb, t.disk_mb) == (8, 1, 16000, 5000)
    assert (phyto.resources_inference.cpu, phyto.resources_inference.ram_mb) == (1, 1000)
    thermal = git_env.catalog.get("module", "thermal-anomaly-segmenter")
    assert thermal is not None and thermal.resources_inference.ram_mb == 10000
    assert thermal.resources_inference.cpu is None and not thermal.gpu_capable


def test_socib_quirks_load(git_env: CatalogEnv) -> None:
    """1-space indentation, metadata_version 1.0.1, created after updated: still an item, dates as written."""
    socib = git_env.catalog.get("module", "socib-rip-currents-detection")
    assert socib is not None
    assert socib.metadata_version == "1.0.1"
    assert (socib.created, socib.updated) == ("2025-12-10", "2025-03-03")


def test_legacy_item_does_not_claim_to_be_updated_today(git_env: CatalogEnv) -> None:
    import datetime

    today = datetime.date.today().isoformat()
    for item_id in ("ai4os-demo-app-v1", "DEEP-OC-mods-v1"):
        item = git_env.catalog.get("module", item_id)
        assert item is not None
        assert item.updated != today
