"""ai4lab.core.settings: defaults < YAML file (AI4LAB_CONFIG) < AI4LAB_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from ai4lab.core.settings import ROLES, GpuDevice, Quota, Settings

FULL_QUOTAS = """\
quotas:
  basic: {cpu: 1, ram_gb: 2, gpu: 0}
  intermediate: {cpu: 2, ram_gb: 4, gpu: 1}
  advanced: {cpu: 4, ram_gb: 8, gpu: 2, sessions: 3}
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AI4LAB_* variable from the outside; AI4LAB_CONFIG names a file that does not exist."""
    for key in list(os.environ):
        if key.startswith("AI4LAB_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # a stray ./ai4lab.yaml must not be read either
    cfg = tmp_path / "absent.yaml"
    monkeypatch.setenv("AI4LAB_CONFIG", str(cfg))
    return cfg


def write_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "conf" / "ai4lab.yaml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text(text)
    monkeypatch.setenv("AI4LAB_CONFIG", str(cfg))
    return cfg


def test_defaults() -> None:
    s = Settings()
    assert s.port == 8000
    assert s.ip == "127.0.0.1"
    assert s.state_dir == Path(".ai4lab")
    assert set(s.quotas) == set(ROLES)
    assert s.quotas["basic"] == Quota(cpu=2, ram_gb=4, gpu=0, sessions=1, trainings=0, storage_gb=5)
    assert s.gpus == []


def test_default_yaml_is_ai4lab_yaml_in_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AI4LAB_CONFIG")
    (tmp_path / "ai4lab.yaml").write_text("port: 8111\n")
    assert Settings().port == 8111


def test_env_port_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI4LAB_PORT", "9123")
    s = Settings()
    assert s.port == 9123
    assert s.public_url == "http://127.0.0.1:9123"


def test_env_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ai4lab_hub_port", "9200")
    assert Settings().hub_port == 9200


def test_yaml_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(
        monkeypatch,
        tmp_path,
        "port: 9000\nidle_timeout: 0\n" + FULL_QUOTAS + "gpus:\n  - {id: '0', model: Tesla T4}\n  - {id: '1'}\n",
    )
    s = Settings()
    assert s.port == 9000
    assert s.idle_timeout == 0
    assert s.quotas["basic"] == Quota(cpu=1, ram_gb=2, gpu=0, sessions=1, trainings=0, storage_gb=5)  # unset fields keep the role default
    assert s.quotas["advanced"] == Quota(cpu=4, ram_gb=8, gpu=2, sessions=3, trainings=2, storage_gb=200)
    assert s.gpus == [GpuDevice(id="0", model="Tesla T4"), GpuDevice(id="1", model="unknown")]


def test_env_wins_over_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(monkeypatch, tmp_path, "port: 9000\nip: 0.0.0.0\n")
    monkeypatch.setenv("AI4LAB_PORT", "9001")
    s = Settings()
    assert s.port == 9001
    assert s.ip == "0.0.0.0"
    assert s.public_url == "http://127.0.0.1:9001"  # wildcard address shown as loopback


def test_init_kwargs_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI4LAB_PORT", "9001")
    assert Settings(port=9002).port == 9002


def test_nested_env_overrides_one_quota_from_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(monkeypatch, tmp_path, FULL_QUOTAS)
    monkeypatch.setenv("AI4LAB_QUOTAS__BASIC__CPU", "0.5")
    s = Settings()
    assert s.quotas["basic"] == Quota(cpu=0.5, ram_gb=2, gpu=0, sessions=1, trainings=0, storage_gb=5)
    assert s.quotas["advanced"].sessions == 3


def test_documented_nested_env_example_works_without_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI4LAB_QUOTAS__BASIC__CPU", "1")
    s = Settings()
    assert s.quotas["basic"].cpu == 1
    assert s.quotas["basic"].ram_gb == 4
    assert set(s.quotas) == set(ROLES)


def test_quotas_missing_a_role_keep_its_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(monkeypatch, tmp_path, "quotas:\n  basic: {cpu: 1}\n")
    s = Settings()
    assert s.quotas["basic"] == Quota(cpu=1, ram_gb=4, gpu=0, sessions=1, trainings=0, storage_gb=5)
    assert s.quotas["advanced"] == Quota(cpu=8, ram_gb=32, gpu=2, sessions=4, trainings=2, storage_gb=200)


def test_quotas_for_unknown_role_is_an_error() -> None:
    with pytest.raises(ValidationError, match="quotas for unknown role.*superuser"):
        Settings(quotas={"superuser": {"cpu": 1, "ram_gb": 1, "gpu": 0}})


def test_invalid_yaml_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(monkeypatch, tmp_path, "port: abc\n")
    with pytest.raises(ValidationError) as ei:
        Settings()
    assert ei.value.errors()[0]["loc"] == ("port",)


def test_invalid_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI4LAB_PORT", "eighty")
    with pytest.raises(ValidationError) as ei:
        Settings()
    assert ei.value.errors()[0]["loc"] == ("port",)


def test_unknown_keys_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(monkeypatch, tmp_path, "no_such_setting: 1\nport: 8500\n")
    monkeypatch.setenv("AI4LAB_NO_SUCH_THING", "x")
    assert Settings().port == 8500


def test_derived_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AI4LAB_STATE_DIR", str(tmp_path / "st" / ".." / "state"))
    s = Settings()
    state = (tmp_path / "state").resolve()
    assert s.state == state
    assert s.db_url == f"sqlite:///{state / 'ai4lab.sqlite'}"
    assert s.hub_db_url == f"sqlite:///{state / 'jupyterhub.sqlite'}"
    assert s.user_storage("alice") == state / "storage" / "alice"
    assert s.user_workspace("alice") == state / "workspaces" / "alice"
    assert s.logs_dir == state / "logs"


def test_relative_state_dir_resolves_against_cwd(tmp_path: Path) -> None:
    assert Settings().state == (tmp_path / ".ai4lab").resolve()


def test_database_url_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI4LAB_DATABASE_URL", "postgresql+psycopg://u:p@db/ai4lab")
    assert Settings().db_url == "postgresql+psycopg://u:p@db/ai4lab"


def test_config_reference_lists_every_setting() -> None:
    from ai4lab.core.config_reference import markdown

    md = markdown()
    for name in Settings.model_fields:
        assert f"| `{name}` | `AI4LAB_{name.upper()}` |" in md
    assert "| `state_dir` | `AI4LAB_STATE_DIR` | `\".ai4lab\"` |" in md


# -- session environments (issue 18) ------------------------------------------------------


def test_session_environments_default_and_operator_additions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = Settings()
    assert list(s.session_environments) == ["base", "pytorch", "tensorflow"]
    assert s.session_environments["pytorch"].requirements == ["torch==2.13.0"]
    assert s.session_environments["pytorch"].image.startswith("ghcr.io/ai4lab/ide-pytorch:")
    cfg = tmp_path / "ai4lab.yaml"
    cfg.write_text(
        "session_environments:\n"
        "  jax: {display_name: JAX, requirements: ['jax==0.10.2'], check: 'import jax', image: my/jax:1}\n"
        "  tensorflow: null\n"
        "  pytorch: {requirements: ['torch==2.14.1']}\n"
    )
    monkeypatch.setenv("AI4LAB_CONFIG", str(cfg))
    s = Settings()
    assert list(s.session_environments) == ["base", "pytorch", "jax"]
    assert s.session_environments["jax"].image == "my/jax:1"
    # a partial override keeps the rest of the default
    assert s.session_environments["pytorch"].requirements == ["torch==2.14.1"]
    assert s.session_environments["pytorch"].display_name == "PyTorch"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Bad Key": {"display_name": "x"}}, "environment key 'Bad Key'"),
        ({"x": {"display_name": "X", "requirements": ["--index-url=http://evil"]}}, "is not a requirement"),
        ({"base": None, "pytorch": None, "tensorflow": None}, "keep at least one"),
    ],
)
def test_bad_session_environments_are_refused(value: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(session_environments=value)
