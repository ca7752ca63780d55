"""The deploy form (ai4-papi user.yaml shape) of real items against role quotas and the GPU inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai4lab.catalog.deploy_config import MAX_DISK_MB, check_choice, deploy_config
from ai4lab.catalog.model import CatalogItem
from ai4lab.core.settings import GpuDevice, Quota, Settings
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
    """As in AI4OS: the metadata's resources are defaults; a GPU that cannot be given is a warning, not a refusal."""
    demo = item(git_env, "ai4os-demo-app")  # inference: 2 CPU, 1 GPU, 1000 MB
    assert quotas["basic"].gpu == 0
    cfg = deploy_config(demo, quota=quotas["basic"], role="basic", gpus=[])
    assert cfg["deployable"] is True and cfg["problems"] == []
    assert cfg["warnings"] == ["this module recommends 1 GPU; it will run on CPU and may be slow "
                               "(this platform has no GPU)"]
    assert cfg["item"] == {"id": "ai4os-demo-app", "kind": "module", "title": "ai4os-demo-app"}
    assert cfg["purpose"] == "inference"
    hw = cfg["hardware"]
    # never an empty range; the declared values are the defaults, within the quota
    assert hw["gpu_num"]["range"] == [0, 0] and hw["gpu_num"]["value"] == 0
    assert hw["cpu_num"]["range"] == [1, quotas["basic"].cpu] and hw["cpu_num"]["value"] == 2
    assert hw["ram"]["range"] == [500, 4000] and hw["ram"]["value"] == 1000


def test_demo_app_with_gpus_but_basic_role(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    cfg = deploy_config(item(git_env, "ai4os-demo-app"), quota=quotas["basic"], role="basic", gpus=TWO_GPUS)
    assert cfg["deployable"] is True
    assert cfg["warnings"] == ["this module recommends 1 GPU; it will run on CPU and may be slow "
                               "(the basic role may not use GPUs)"]


def test_declared_resources_are_minimums_only_when_the_operator_says_so(git_env: CatalogEnv,
                                                                        quotas: dict[str, Quota]) -> None:
    demo = item(git_env, "ai4os-demo-app")
    cfg = deploy_config(demo, quota=quotas["basic"], role="basic", gpus=[], hard=True)
    assert cfg["deployable"] is False and cfg["warnings"] == []
    assert cfg["problems"] == ["needs 1 GPU(s), this platform has none"]
    assert cfg["hardware"]["cpu_num"]["range"] == [2, quotas["basic"].cpu]
    adv = deploy_config(demo, quota=quotas["advanced"], role="advanced", gpus=TWO_GPUS, hard=True)
    assert adv["deployable"] is True and adv["hardware"]["gpu_num"]["range"] == [1, 2]
    basic_gpus = deploy_config(demo, quota=quotas["basic"], role="basic", gpus=TWO_GPUS, hard=True)
    assert any("GPU" in p and "at most 0" in p and "role" in p for p in basic_gpus["problems"])


def test_demo_app_advanced_quota_two_gpus(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    demo = item(git_env, "ai4os-demo-app")
    adv = quotas["advanced"]
    cfg = deploy_config(demo, quota=adv, role="advanced", gpus=TWO_GPUS, backends=["local", "nomad"])
    assert cfg["deployable"] is True and cfg["problems"] == [] and cfg["warnings"] == []
    hw = cfg["hardware"]
    # ranges go from what anything needs to the quota; the item's resources are the values
    assert hw["cpu_num"]["range"] == [1, adv.cpu] and hw["cpu_num"]["value"] == 2
    assert hw["gpu_num"]["range"] == [0, min(adv.gpu, 2)] and hw["gpu_num"]["value"] == 1
    assert hw["ram"]["range"] == [500, int(adv.ram_gb * 1000)] and hw["ram"]["value"] == 1000
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
    assert check_choice(cfg, {"cpu_num": 1, "gpu_num": 0, "ram": 32000}) == []
    errors = check_choice(cfg, {"cpu_num": 0, "gpu_num": 3, "ram": 499, "disk": 60000})
    assert len(errors) == 4
    assert errors[0].startswith("cpu_num=0 is outside [1, 8]")
    assert errors[1].startswith("gpu_num=3 is outside [0, 2]")
    assert any(e.startswith("ram=499") for e in errors)
    assert any(e.startswith("disk=60000") for e in errors)
    assert check_choice(cfg, {"cpu_num": 9}) == ["cpu_num=9 is outside [1, 8]"]
    assert check_choice(cfg, {"flux_capacitor": 1})[0].startswith("unknown hardware field 'flux_capacitor': use ")


def test_training_uses_the_training_resources(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    phyto = item(git_env, "phyto-plankton-classification-e6a5445")
    adv = quotas["advanced"]
    inference = deploy_config(phyto, quota=adv, role="advanced", gpus=TWO_GPUS)
    assert inference["hardware"]["gpu_num"]["value"] == 0 and inference["hardware"]["cpu_num"]["value"] == 1
    training = deploy_config(phyto, quota=adv, role="advanced", gpus=TWO_GPUS, purpose="training")
    assert training["purpose"] == "training" and training["deployable"] is True and training["warnings"] == []
    hw = training["hardware"]
    assert hw["cpu_num"]["range"] == [1, 8] and hw["cpu_num"]["value"] == 8
    assert hw["gpu_num"]["range"] == [0, 2] and hw["gpu_num"]["value"] == 1
    assert hw["ram"]["range"] == [500, 32000] and hw["ram"]["value"] == 16000
    assert hw["disk"]["range"] == [1000, MAX_DISK_MB]
    # the intermediate role (4 cores, 16 GB, 1 GPU) trains it with fewer cores, and is told so
    inter = deploy_config(phyto, quota=quotas["intermediate"], role="intermediate", gpus=TWO_GPUS, purpose="training")
    assert inter["deployable"] is True and inter["hardware"]["cpu_num"]["value"] == 4
    assert len(inter["warnings"]) == 1 and "8 CPU cores" in inter["warnings"][0] and "intermediate" in inter["warnings"][0]
    # and without GPUs at all: the CPU and the GPU warnings both
    none = deploy_config(phyto, quota=quotas["intermediate"], role="intermediate", gpus=[], purpose="training")
    assert len(none["warnings"]) == 2 and none["deployable"] is True


def test_ram_above_the_quota(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    sentinel = item(git_env, "sentinel-data-fusion")  # inference memory_MB 40000, storage 25000
    cfg = deploy_config(sentinel, quota=quotas["advanced"], role="advanced", gpus=TWO_GPUS)
    assert cfg["deployable"] is True
    assert cfg["warnings"] == ["this module recommends 40000 MB RAM; the advanced quota allows 32000 MB: "
                               "it may run out of memory"]
    assert cfg["hardware"]["ram"]["value"] == 32000
    assert cfg["hardware"]["disk"]["value"] == 25000


def test_item_without_resources_gets_defaults(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    cvat = item(git_env, "ai4os-cvat", "tool")
    cfg = deploy_config(cvat, quota=quotas["basic"], role="basic", gpus=[])
    assert cfg["deployable"] is True and cfg["warnings"] == []
    hw = cfg["hardware"]
    assert hw["cpu_num"]["range"] == [1, 2] and hw["cpu_num"]["value"] == 1
    assert hw["gpu_num"]["range"] == [0, 0] and hw["gpu_num"]["value"] == 0
    assert hw["ram"]["range"] == [500, 4000] and hw["ram"]["value"] == 2000
    assert cfg["general"]["service"]["value"] == "tool"
    assert hw["gpu_type"]["options"] == [""]


def test_disk_need_above_the_platform_maximum_is_a_warning(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    demo = item(git_env, "ai4os-demo-app")
    huge = demo.model_copy(update={"resources_inference": demo.resources_inference.model_copy(
        update={"disk_mb": MAX_DISK_MB + 10000})})
    cfg = deploy_config(huge, quota=quotas["advanced"], role="advanced", gpus=TWO_GPUS)
    low, high = cfg["hardware"]["disk"]["range"]
    assert low <= cfg["hardware"]["disk"]["value"] <= high
    assert any("MB disk" in w for w in cfg["warnings"])


def test_check_choice_on_the_gpu_model(git_env: CatalogEnv, quotas: dict[str, Quota]) -> None:
    cfg = deploy_config(item(git_env, "ai4os-demo-app"), quota=quotas["advanced"], role="advanced", gpus=TWO_GPUS)
    assert check_choice(cfg, {"gpu_num": 1, "gpu_type": "Tesla T4"}) == []  # type: ignore[dict-item]
