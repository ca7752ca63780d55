"""The deploy form (ai4-papi user.yaml shape) of real items against role quotas and the GPU inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai4lab.catalog.deploy_config import MAX_DISK_MB, check_choice, deploy_config
from ai4lab.catalog.model import CatalogItem
from ai4lab.settings import GpuDevice, Quota, Settings
from tests.catalog.helpers import CatalogEnv

TWO_GPUS = [GpuDevice(id="0", model="Tesla T4"), GpuDevice(id="1", model="Tesla V100")]


@pytest.fixture
def quotas(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Quota]:
    """The default quotas of the platform settings (no config file, no AI4LAB_* overrides)."""
    import os

    for k in list(os.environ):
        if k.startswith("AI4LAB_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AI4LAB_CONFIG", str(tmp_path / "none.yaml"))
    return Settings().quotas


def item(env: CatalogEnv, item_id: str, kind: str = "module") -> CatalogItem:
    it = env.catalog.get(kind, item_id)  # type: ignore[arg-type]
    assert it is not None
    return it


def test_demo_app_basic_quota_without_gpus(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    demo = item(git_env, "ai4os-demo-app")
    assert quotas["basic"].gpu == 0
    cfg = deploy_config(demo, quota=quotas["basic"], role="basic", gpus=[])
    assert cfg["deployable"] is False
    assert len(cfg["problems"]) == 1
    assert "GPU" in cfg["problems"][0] and "needs 1" in cfg["problems"][0] and "none" in cfg["problems"][0]
    assert cfg["item"] == {"id": "ai4os-demo-app", "kind": "module", "title": "ai4os-demo-app"}
    assert cfg["purpose"] == "inference"
    # the CPU (2) and RAM (1000 MB) needs fit the basic quota (2 cores, 4 GB)
    assert cfg["hardware"]["cpu_num"]["range"] == [2, quotas["basic"].cpu]
    assert cfg["hardware"]["ram"]["range"] == [1000, 4000]


def test_demo_app_with_gpus_but_basic_role(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    cfg = deploy_config(item(git_env, "ai4os-demo-app"), quota=quotas["basic"], role="basic", gpus=TWO_GPUS)
    assert cfg["deployable"] is False
    assert any("GPU" in p and "at most 0" in p and "role" in p for p in cfg["problems"])


def test_demo_app_advanced_quota_two_gpus(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    demo = item(git_env, "ai4os-demo-app")
    adv = quotas["advanced"]
    cfg = deploy_config(demo, quota=adv, role="advanced", gpus=TWO_GPUS, backends=["local", "nomad"])
    assert cfg["deployable"] is True and cfg["problems"] == []
    hw = cfg["hardware"]
    # ranges start at the item's minimums and stop at the quota
    assert hw["cpu_num"]["range"] == [2, adv.cpu] and hw["cpu_num"]["value"] == 2
    assert hw["gpu_num"]["range"] == [1, min(adv.gpu, 2)] and hw["gpu_num"]["value"] == 1
    assert hw["ram"]["range"] == [1000, int(adv.ram_gb * 1000)]
    assert 1000 <= hw["ram"]["value"] <= adv.ram_gb * 1000
    assert hw["disk"]["range"][0] == 1000 and hw["disk"]["range"][1] == MAX_DISK_MB
    assert hw["gpu_type"]["options"] == ["", "Tesla T4", "Tesla V100"]
    g = cfg["general"]
    assert g["docker_image"]["value"] == "ai4oshub/ai4os-demo-app" and g["docker_tag"]["value"] == "latest"
    assert g["backend"]["options"] == ["local", "nomad"] and g["backend"]["value"] == "local"
    assert g["service"]["value"] == "deepaas"
    for field in ("cpu_num", "gpu_num", "ram", "disk"):
        low, high = hw[field]["range"]
        assert low <= hw[field]["value"] <= high, field
    assert check_choice(cfg, {f: hw[f]["value"] for f in ("cpu_num", "gpu_num", "ram", "disk")}) == []


def test_check_choice_flags_values_outside_the_ranges(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    cfg = deploy_config(item(git_env, "ai4os-demo-app"), quota=quotas["advanced"], role="advanced", gpus=TWO_GPUS)
    assert check_choice(cfg, {"cpu_num": 2, "gpu_num": 2, "ram": 32000}) == []
    errors = check_choice(cfg, {"cpu_num": 1, "gpu_num": 3, "ram": 999, "disk": 60000})
    assert len(errors) == 4
    assert errors[0].startswith("cpu_num=1 is outside [2, 8]")
    assert errors[1].startswith("gpu_num=3 is outside [1, 2]")
    assert any(e.startswith("ram=999") for e in errors)
    assert any(e.startswith("disk=60000") for e in errors)
    assert check_choice(cfg, {"cpu_num": 9}) == ["cpu_num=9 is outside [2, 8]"]
    assert check_choice(cfg, {"flux_capacitor": 1})[0].startswith("unknown hardware field 'flux_capacitor': use ")


def test_training_uses_the_training_resources(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    phyto = item(git_env, "phyto-plankton-classification-e6a5445")
    adv = quotas["advanced"]
    inference = deploy_config(phyto, quota=adv, role="advanced", gpus=TWO_GPUS)
    assert inference["hardware"]["cpu_num"]["range"][0] == 1
    assert inference["hardware"]["gpu_num"]["range"][0] == 0
    assert inference["hardware"]["ram"]["range"][0] == 1000
    training = deploy_config(phyto, quota=adv, role="advanced", gpus=TWO_GPUS, purpose="training")
    assert training["purpose"] == "training" and training["deployable"] is True
    hw = training["hardware"]
    assert hw["cpu_num"]["range"] == [8, 8] and hw["cpu_num"]["value"] == 8
    assert hw["gpu_num"]["range"] == [1, 2] and hw["gpu_num"]["value"] == 1
    assert hw["ram"]["range"] == [16000, 32000] and hw["ram"]["value"] == 16000
    assert hw["disk"]["range"] == [5000, MAX_DISK_MB]
    # the intermediate role (4 cores, 16 GB, 1 GPU) cannot train it: 8 cores needed
    inter = deploy_config(phyto, quota=quotas["intermediate"], role="intermediate", gpus=TWO_GPUS, purpose="training")
    assert inter["deployable"] is False
    assert len(inter["problems"]) == 1 and "8 CPU" in inter["problems"][0] and "intermediate" in inter["problems"][0]
    # and without GPUs at all: the CPU and the GPU problems both
    none = deploy_config(phyto, quota=quotas["intermediate"], role="intermediate", gpus=[], purpose="training")
    assert len(none["problems"]) == 2


def test_ram_above_the_quota(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    sentinel = item(git_env, "sentinel-data-fusion")  # inference memory_MB 40000, storage 25000
    cfg = deploy_config(sentinel, quota=quotas["advanced"], role="advanced", gpus=TWO_GPUS)
    assert cfg["deployable"] is False
    assert cfg["problems"] == ["needs 40000 MB RAM, the advanced quota allows 32000 MB"]
    assert cfg["hardware"]["disk"]["range"] == [25000, MAX_DISK_MB]
    assert cfg["hardware"]["disk"]["value"] == 25000


def test_item_without_resources_gets_defaults(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    cvat = item(git_env, "ai4os-cvat", "tool")
    cfg = deploy_config(cvat, quota=quotas["basic"], role="basic", gpus=[])
    assert cfg["deployable"] is True
    hw = cfg["hardware"]
    assert hw["cpu_num"]["range"] == [1, 2] and hw["cpu_num"]["value"] == 1
    assert hw["gpu_num"]["range"] == [0, 0] and hw["gpu_num"]["value"] == 0
    assert hw["ram"]["range"] == [500, 4000] and hw["ram"]["value"] == 2000
    assert cfg["general"]["service"]["value"] == "tool"
    assert hw["gpu_type"]["options"] == [""]


def test_disk_need_above_the_platform_maximum_is_a_problem(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    demo = item(git_env, "ai4os-demo-app")
    huge = demo.model_copy(update={"resources_inference": demo.resources_inference.model_copy(
        update={"disk_mb": MAX_DISK_MB + 10000})})
    cfg = deploy_config(huge, quota=quotas["advanced"], role="advanced", gpus=TWO_GPUS)
    low, high = cfg["hardware"]["disk"]["range"]
    assert cfg["deployable"] is False or low <= high


def test_check_choice_on_the_gpu_model(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    cfg = deploy_config(item(git_env, "ai4os-demo-app"), quota=quotas["advanced"], role="advanced", gpus=TWO_GPUS)
    assert check_choice(cfg, {"gpu_num": 1, "gpu_type": "Tesla T4"}) == []  # type: ignore[dict-item]
