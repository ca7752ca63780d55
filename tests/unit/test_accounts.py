"""ai4lab.core.accounts and ai4lab.core.db.upgrade on a real SQLite database in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ai4lab.core import accounts, db
from ai4lab.core.accounts import AccountError


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'state' / 'ai4lab.sqlite'}"
    db.upgrade(u)
    return u


# -- schema -----------------------------------------------------------------------------


def test_upgrade_creates_schema_and_is_idempotent(tmp_path: Path) -> None:
    u = f"sqlite:///{tmp_path / 'new' / 'db.sqlite'}"
    db.upgrade(u)  # also creates the parent folder
    accounts.add_user(u, "alice", "password1")
    db.upgrade(u)  # second run: nothing to do, data kept
    engine = db.get_engine(u)
    assert {"users", "deployments", "alembic_version"} <= set(sa.inspect(engine).get_table_names())
    with engine.connect() as c:
        versions = c.execute(sa.text("select version_num from alembic_version")).scalars().all()
    assert len(versions) == 1
    assert [x.name for x in accounts.list_users(u)] == ["alice"]


# -- passwords --------------------------------------------------------------------------


def test_hash_verify_round_trip() -> None:
    h = accounts.hash_password("correct horse")
    assert h.startswith("scrypt$16384$8$1$")
    assert "correct horse" not in h
    assert accounts.verify_password("correct horse", h) is True
    assert accounts.verify_password("correct horsE", h) is False
    assert accounts.verify_password("", h) is False


def test_hashes_are_salted() -> None:
    a, b = accounts.hash_password("same-password"), accounts.hash_password("same-password")
    assert a != b
    assert accounts.verify_password("same-password", a)
    assert accounts.verify_password("same-password", b)


def test_non_ascii_password() -> None:
    h = accounts.hash_password("pässwörd-日本")
    assert accounts.verify_password("pässwörd-日本", h)
    assert not accounts.verify_password("passwort-日本", h)


@pytest.mark.parametrize("stored", [None, "", "plain-text", "bcrypt$2b$xyz", "$scrypt$"])
def test_verify_unusable_hash_is_false(stored: str | None) -> None:
    assert accounts.verify_password("anything", stored) is False


def test_verify_corrupt_scrypt_hash_is_false() -> None:
    assert accounts.verify_password("anything", "scrypt$16384$8") is False


# -- add_user ---------------------------------------------------------------------------


def test_add_user_stores_fields(url: str) -> None:
    u = accounts.add_user(url, "alice", "password1", role="intermediate", admin=True, vo="vo.x")
    assert (u.name, u.role, u.is_admin, u.vo) == ("alice", "intermediate", True, "vo.x")
    got = accounts.get_user(url, "alice")
    assert got is not None
    assert (got.name, got.role, got.is_admin, got.vo) == ("alice", "intermediate", True, "vo.x")
    assert got.password_hash and accounts.verify_password("password1", got.password_hash)
    assert got.created_at is not None


def test_add_user_defaults(url: str) -> None:
    accounts.add_user(url, "bob", "password1")
    got = accounts.get_user(url, "bob")
    assert got is not None and got.role == "basic" and got.is_admin is False and got.vo is None


@pytest.mark.parametrize(
    ("name", "password", "role", "match"),
    [
        ("Alice", "password1", "basic", r"invalid user name 'Alice'"),
        ("", "password1", "basic", r"invalid user name ''"),
        ("-alice", "password1", "basic", r"invalid user name '-alice'"),
        ("al ice", "password1", "basic", r"invalid user name 'al ice'"),
        ("al/ice", "password1", "basic", r"invalid user name 'al/ice'"),
        ("a" * 65, "password1", "basic", r"invalid user name"),
        ("alice", "password1", "root", r"unknown role 'root': choose one of basic, intermediate, advanced"),
        ("alice", "password1", "Basic", r"unknown role 'Basic'"),
        ("alice", "short", "basic", r"password too short: use at least 8 characters"),
        ("alice", "1234567", "basic", r"password too short"),
    ],
)
def test_add_user_errors(url: str, name: str, password: str, role: str, match: str) -> None:
    with pytest.raises(AccountError, match=match):
        accounts.add_user(url, name, password, role=role)
    assert accounts.list_users(url) == []


def test_add_user_limits_accepted(url: str) -> None:
    accounts.add_user(url, "a" * 64, "12345678")  # longest name, shortest password
    accounts.add_user(url, "0.a_b-c", "12345678")
    assert [u.name for u in accounts.list_users(url)] == ["0.a_b-c", "a" * 64]


def test_username_with_trailing_newline_refused() -> None:
    with pytest.raises(AccountError):
        accounts.validate_username("alice\n")


def test_add_duplicate_user(url: str) -> None:
    accounts.add_user(url, "alice", "password1", role="advanced")
    with pytest.raises(AccountError, match=r"user 'alice' exists already: use 'ai4lab users set'"):
        accounts.add_user(url, "alice", "otherpassword", role="basic")
    got = accounts.get_user(url, "alice")
    assert got is not None and got.role == "advanced"
    assert accounts.authenticate(url, "alice", "password1") is not None
    assert accounts.authenticate(url, "alice", "otherpassword") is None


def test_account_error_is_value_error() -> None:
    assert issubclass(AccountError, ValueError)


# -- update_user ------------------------------------------------------------------------


def test_update_user(url: str) -> None:
    accounts.add_user(url, "alice", "password1")
    u = accounts.update_user(url, "alice", role="advanced", admin=True)
    assert (u.role, u.is_admin) == ("advanced", True)
    got = accounts.get_user(url, "alice")
    assert got is not None and (got.role, got.is_admin) == ("advanced", True)

    accounts.update_user(url, "alice", admin=False)
    got = accounts.get_user(url, "alice")
    assert got is not None and (got.role, got.is_admin) == ("advanced", False)  # role untouched

    accounts.update_user(url, "alice", password="new-password")
    assert accounts.authenticate(url, "alice", "password1") is None
    assert accounts.authenticate(url, "alice", "new-password") is not None


def test_update_unknown_user(url: str) -> None:
    with pytest.raises(AccountError, match=r"no user 'bob': add it with 'ai4lab users add'"):
        accounts.update_user(url, "bob", role="advanced")
    assert accounts.get_user(url, "bob") is None


def test_update_bad_values_change_nothing(url: str) -> None:
    accounts.add_user(url, "alice", "password1", role="basic")
    with pytest.raises(AccountError, match="unknown role 'boss'"):
        accounts.update_user(url, "alice", role="boss", admin=True)
    # role valid, password too short: the whole update is rolled back
    with pytest.raises(AccountError, match="password too short"):
        accounts.update_user(url, "alice", role="advanced", admin=True, password="short")
    got = accounts.get_user(url, "alice")
    assert got is not None and (got.role, got.is_admin) == ("basic", False)
    assert accounts.authenticate(url, "alice", "password1") is not None


# -- authenticate / ensure / list -------------------------------------------------------


def test_authenticate(url: str) -> None:
    accounts.add_user(url, "alice", "password1", role="intermediate")
    u = accounts.authenticate(url, "alice", "password1")
    assert u is not None and u.name == "alice" and u.role == "intermediate"
    assert accounts.authenticate(url, "alice", "password2") is None
    assert accounts.authenticate(url, "alice", "") is None
    assert accounts.authenticate(url, "nobody", "password1") is None


def test_external_user_without_password_cannot_log_in(url: str) -> None:
    u = accounts.ensure_user(url, "carol", role="intermediate")
    assert u.password_hash is None
    assert accounts.authenticate(url, "carol", "") is None
    assert accounts.authenticate(url, "carol", "anything") is None
    # ensure_user does not overwrite an existing row
    accounts.ensure_user(url, "carol", role="basic", admin=True)
    got = accounts.get_user(url, "carol")
    assert got is not None and (got.role, got.is_admin) == ("intermediate", False)


def test_list_users_sorted(url: str) -> None:
    for name in ("zoe", "alice", "mike"):
        accounts.add_user(url, name, "password1")
    assert [u.name for u in accounts.list_users(url)] == ["alice", "mike", "zoe"]


# -- accounts of an external login (OIDC) -------------------------------------------------


def test_external_login_is_written_at_every_login_and_never_takes_a_local_name(url: str) -> None:
    accounts.record_external_login(url, "olga", role="intermediate", vo="vo.ai4eosc.eu", admin=False)
    accounts.record_external_login(url, "olga", role="basic", vo="vo.imagine-ai.eu", admin=True)  # the claims changed
    olga = accounts.get_user(url, "olga")
    assert olga is not None and (olga.role, olga.vo, olga.is_admin, olga.password_hash) == (
        "basic", "vo.imagine-ai.eu", True, None)
    assert not accounts.is_local_account(url, "olga")
    accounts.add_user(url, "admin", "password1", role="advanced", admin=True)
    assert accounts.is_local_account(url, "admin")
    with pytest.raises(AccountError, match="belongs to a local account"):
        accounts.record_external_login(url, "admin", role="basic", vo=None, admin=False)
    admin = accounts.get_user(url, "admin")
    assert admin is not None and (admin.role, admin.is_admin) == ("advanced", True)  # untouched
    with pytest.raises(AccountError, match="unknown role"):
        accounts.record_external_login(url, "olga", role="root", vo=None, admin=False)
