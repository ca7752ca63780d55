"""ai4lab.core.user_secrets: users' secrets stored sealed, by validated names, listed without values."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai4lab.core import db, user_secrets
from ai4lab.core.errors import PlatformError
from ai4lab.core.settings import Settings

VALUE = "hf_Very-Secret-Token-0123456789"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(state_dir=tmp_path / "state", secret_max_bytes=64, secrets_per_user=3)
    db.upgrade(s.db_url)
    return s


def test_migration_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    """0003 is a proper revision of the chain: down to 0002 drops the table, up again brings it back."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    db.upgrade(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).resolve().parents[1] / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["engine"] = db.get_engine(url)
    assert "user_secrets" in sa.inspect(db.get_engine(url)).get_table_names()
    command.downgrade(cfg, "0002")
    assert "user_secrets" not in sa.inspect(db.get_engine(url)).get_table_names()
    db.upgrade(url)
    assert "user_secrets" in sa.inspect(db.get_engine(url)).get_table_names()


def test_store_list_replace_delete(settings: Settings) -> None:
    entry, created = user_secrets.put(settings, "alice", "HF_TOKEN", VALUE, replace=False)
    assert created and entry["name"] == "HF_TOKEN" and entry["created_at"] and entry["updated_at"]
    listed = user_secrets.list_secrets(settings.db_url, "alice")
    assert [s["name"] for s in listed] == ["HF_TOKEN"]
    assert VALUE not in repr(listed)
    assert user_secrets.list_secrets(settings.db_url, "bob") == []  # per user

    with pytest.raises(PlatformError) as e:  # POST does not overwrite: the old value stays
        user_secrets.put(settings, "alice", "HF_TOKEN", "other", replace=False)
    assert e.value.status == 409 and "PUT /secrets/HF_TOKEN" in e.value.message
    assert user_secrets.values(settings.db_url, settings.state, "alice", ["HF_TOKEN"]) == {"HF_TOKEN": VALUE}

    _, created = user_secrets.put(settings, "alice", "HF_TOKEN", "hf_new", replace=True)
    assert not created
    assert user_secrets.values(settings.db_url, settings.state, "alice", ["HF_TOKEN"]) == {"HF_TOKEN": "hf_new"}

    user_secrets.delete(settings.db_url, "alice", "HF_TOKEN")
    assert user_secrets.list_secrets(settings.db_url, "alice") == []
    with pytest.raises(PlatformError) as e:
        user_secrets.delete(settings.db_url, "alice", "HF_TOKEN")
    assert e.value.status == 404


def test_values_are_sealed_in_the_database_file(settings: Settings) -> None:
    user_secrets.put(settings, "alice", "HF_TOKEN", VALUE, replace=False)
    raw = b"".join(p.read_bytes() for p in settings.state.glob("ai4lab.sqlite*"))
    assert b"HF_TOKEN" in raw and b"fernet:" in raw
    assert VALUE.encode() not in raw


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "needs a name"),
        ("1TOKEN", "not an environment variable name"),
        ("MY-TOKEN", "not an environment variable name"),
        ("A B", "not an environment variable name"),
        ("../x", "not an environment variable name"),
        ("X" * 65, "longer than 64"),
        ("PATH", "the platform sets itself"),
        ("AI4LAB_API_TOKEN", "the platform sets itself"),
        ("JUPYTERHUB_API_TOKEN", "the platform sets itself"),
        ("MLFLOW_TRACKING_TOKEN", "the platform sets itself"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_lost(settings: Settings, name: str, reason: str) -> None:
    user_secrets.put(settings, "alice", "KEPT", VALUE, replace=False)
    with pytest.raises(PlatformError) as e:
        user_secrets.put(settings, "alice", name, "v", replace=True)
    assert e.value.status == 400 and reason in e.value.message
    assert user_secrets.names(settings.db_url, "alice") == ["KEPT"]


def test_other_mlflow_variables_are_allowed(settings: Settings) -> None:
    """An outside MLflow's password is a secret people keep: only the platform's own tracking variables are taken."""
    user_secrets.put(settings, "alice", "MLFLOW_TRACKING_PASSWORD", VALUE, replace=False)
    assert user_secrets.names(settings.db_url, "alice") == ["MLFLOW_TRACKING_PASSWORD"]


def test_values_are_checked(settings: Settings) -> None:
    cases = [("", 400, "empty"), ("a\x00b", 400, "NUL"), ("é" * 40, 413, "80 bytes"), ("\ud800", 400, "Unicode")]
    for value, status, reason in cases:
        with pytest.raises(PlatformError) as e:
            user_secrets.put(settings, "alice", "X", value, replace=False)
        assert (e.value.status, reason in e.value.message) == (status, True), e.value.message
    user_secrets.put(settings, "alice", "KEY_FILE", "line one\nline two\n", replace=False)  # newlines are fine
    assert user_secrets.values(settings.db_url, settings.state, "alice", ["KEY_FILE"])["KEY_FILE"].count("\n") == 2


def test_count_per_user_is_limited(settings: Settings) -> None:
    for i in range(3):
        user_secrets.put(settings, "alice", f"S{i}", "v", replace=False)
    with pytest.raises(PlatformError) as e:
        user_secrets.put(settings, "alice", "S3", "v", replace=True)
    assert e.value.status == 403 and "delete one" in e.value.message
    user_secrets.put(settings, "alice", "S0", "replaced", replace=True)  # replacing needs no new room
    user_secrets.put(settings, "bob", "S0", "v", replace=False)  # another user's count is their own


def test_names_asked_for_must_be_the_owners(settings: Settings) -> None:
    user_secrets.put(settings, "alice", "HF_TOKEN", VALUE, replace=False)
    assert user_secrets.check_names(settings.db_url, "alice", ["HF_TOKEN", "HF_TOKEN"]) == ["HF_TOKEN"]
    with pytest.raises(PlatformError) as e:
        user_secrets.check_names(settings.db_url, "bob", ["HF_TOKEN"])  # alice's, not bob's
    assert e.value.status == 400 and "no secret 'HF_TOKEN' of yours" in e.value.message
    with pytest.raises(PlatformError) as e:
        user_secrets.values(settings.db_url, settings.state, "bob", ["HF_TOKEN"])
    assert e.value.status == 409 and "deleted" in e.value.message
