"""Local accounts of the embedded default: users, roles, scrypt-hashed passwords."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from sqlalchemy import select

from ai4lab.core.db import User, session_scope
from ai4lab.core.settings import ROLES

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# JupyterHub normalises names to lower case; keep names usable in URLs and paths.
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class AccountError(ValueError):
    """A request about accounts that cannot be honoured; the message says what to fix."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    try:
        _, n, r, p, salt, digest = stored.split("$")
        candidate = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p))
        return hmac.compare_digest(candidate, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False  # a damaged hash refuses the login; it never crashes it


def validate_username(name: str) -> str:
    if not USERNAME_RE.fullmatch(name):
        raise AccountError(
            f"invalid user name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def add_user(
    db_url: str,
    name: str,
    password: str,
    role: str = "basic",
    admin: bool = False,
    vo: str | None = None,
) -> User:
    validate_username(name)
    validate_role(role)
    if len(password) < 8:
        raise AccountError("password too short: use at least 8 characters")
    with session_scope(db_url) as db:
        if db.get(User, name) is not None:
            raise AccountError(f"user {name!r} exists already: use 'ai4lab users set' to change it")
        user = User(name=name, role=role, is_admin=admin, password_hash=hash_password(password), vo=vo)
        db.add(user)
    return user


def update_user(
    db_url: str,
    name: str,
    *,
    role: str | None = None,
    admin: bool | None = None,
    password: str | None = None,
) -> User:
    with session_scope(db_url) as db:
        user = db.get(User, name)
        if user is None:
            raise AccountError(f"no user {name!r}: add it with 'ai4lab users add'")
        if role is not None:
            user.role = validate_role(role)
        if admin is not None:
            user.is_admin = admin
        if password is not None:
            if len(password) < 8:
                raise AccountError("password too short: use at least 8 characters")
            user.password_hash = hash_password(password)
    return user


def ensure_user(db_url: str, name: str, *, role: str = "basic", admin: bool = False) -> User:
    """The platform row of a user who logged in through an external authenticator (e.g. OIDC)."""
    with session_scope(db_url) as db:
        user = db.get(User, name)
        if user is None:
            user = User(name=name, role=role, is_admin=admin)
            db.add(user)
        return user


def record_external_login(db_url: str, name: str, *, role: str, vo: str | None, admin: bool) -> User:
    """Write what an external login (OIDC claims) says of a user: role, VO and admin flag, at every login.

    Why overwrite: the provider is the authority for these accounts, so a changed claim must
    take effect at the next login (``ai4lab users set`` changes last only until then).
    A local account of the same name is refused: whoever controls a name at the provider
    must not become the local account (for instance ``admin``).
    """
    validate_role(role)
    with session_scope(db_url) as db:
        user = db.get(User, name)
        if user is not None and user.password_hash:
            raise local_name_taken(name)
        if user is None:
            user = User(name=name)
            db.add(user)
        user.role, user.vo, user.is_admin = role, vo, admin
        return user


def local_name_taken(name: str) -> AccountError:
    """The refusal of an external login whose name is a local account's."""
    return AccountError(f"the name {name!r} belongs to a local account of this platform: log in with its password")


def is_local_account(db_url: str, name: str) -> bool:
    """True for an account that logs in with a password kept here (not through an external provider)."""
    user = get_user(db_url, name)
    return user is not None and bool(user.password_hash)


def get_user(db_url: str, name: str) -> User | None:
    with session_scope(db_url) as db:
        return db.get(User, name)


def list_users(db_url: str) -> list[User]:
    with session_scope(db_url) as db:
        return list(db.scalars(select(User).order_by(User.name)))


def authenticate(db_url: str, name: str, password: str) -> User | None:
    user = get_user(db_url, name)
    if user is None:
        # spend the same time as a real check so that names cannot be probed by timing
        verify_password(password, hash_password("x" * 8))
        return None
    return user if verify_password(password, user.password_hash) else None
