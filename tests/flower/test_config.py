"""The Flower tool's configuration: AI4OS-like defaults, friendly strategy parameters, one clear reason per error."""

from __future__ import annotations

import pytest

from ai4lab.flower.client import ClientError, adapter_name, command, module_folder
from ai4lab.flower.config import FlowerConfigError, validate_config
from ai4lab.core.settings import bundled_catalog_path


def test_defaults_match_the_ai4os_federated_server() -> None:
    cfg = validate_config(None)
    assert (cfg.rounds, cfg.strategy, cfg.min_fit_clients, cfg.min_available_clients, cfg.metric) == \
        (5, "FedAvg", 2, 2, "accuracy")
    assert cfg.dp is None and cfg.secure_aggregation is False


def test_friendly_parameters_map_to_flwr_arguments() -> None:
    assert validate_config({"strategy": "FedAdam", "strategy_params": {"server_learning_rate": 0.05}}) \
        .server_config()["strategy_kwargs"] == {"eta": 0.05}
    assert validate_config({"strategy": "FedProx"}).server_config()["strategy_kwargs"] == {"proximal_mu": 0.1}
    dp = validate_config({"dp": {"clipping_norm": 2, "noise_multiplier": 0.5}}).server_config()["dp"]
    assert dp == {"clipping_norm": 2.0, "noise_multiplier": 0.5}


@pytest.mark.parametrize(("raw", "reason"), [
    ({"min_fit_clients": 1}, "min_fit_clients: Input should be greater than or equal to 2"),
    ({"min_available_clients": 1}, "min_available_clients"),
    ({"min_fit_clients": 3, "min_available_clients": 2}, "must be at least min_fit_clients"),
    ({"strategy": "FedMagic"}, "unknown strategy 'FedMagic'"),
    ({"rounds": 0}, "rounds: Input should be greater than or equal to 1"),
    ({"strategy": "FedProx", "strategy_params": {"proximal_mu": 0}}, "FedProx needs strategy_params.proximal_mu > 0"),
    ({"strategy": "FedMedian", "strategy_params": {"eta": 1}}, "do not apply to FedMedian"),
    ({"dp": {"clipping_norm": 0, "noise_multiplier": 1}}, "dp.clipping_norm"),
    ({"secure_aggregation": True}, "secure_aggregation is not available"),
    ({"roundz": 3}, "roundz: Extra inputs are not permitted"),
])
def test_bad_configs_say_what_to_fix(raw: dict, reason: str) -> None:
    with pytest.raises(FlowerConfigError, match="invalid Flower config") as e:
        validate_config(raw)
    assert reason in str(e.value)


def test_client_finds_the_module_adapter_and_refuses_bad_arguments(tmp_path) -> None:  # type: ignore[no-untyped-def]
    digits = module_folder("ai4lab-digits")
    assert digits == bundled_catalog_path() / "modules" / "ai4lab-digits"
    assert adapter_name(digits) == "ai4lab_digits.flower"
    with pytest.raises(ClientError, match="no 'flower' extra"):
        adapter_name(bundled_catalog_path() / "modules" / "ai4lab-diabetes")
    with pytest.raises(ClientError, match="--module"):
        module_folder("no-such-module")
    with pytest.raises(ClientError, match="--address"):
        command("localhost", "ai4lab-digits", str(tmp_path))
    with pytest.raises(ClientError, match="--data"):
        command("localhost:9092", "ai4lab-digits", str(tmp_path / "missing.csv"))
