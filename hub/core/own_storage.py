"""A user's own storage server (their Nextcloud account, their bucket), used instead of the operator's.

Why users bring their own: in AI4OS each user's storage is their own Nextcloud,
reached with their own app password; a lab may have no central storage at all.
The description is kept in the platform database with its password sealed
(``ai4lab.core.secret_box``); the API never shows the password again, and the
storage's contents are theirs: the platform's storage quota does not apply.

The platform connects to the URL a user gives (to check it, then to read and
mount it), so only HTTPS is taken unless the operator allows plain HTTP
(``own_storage_allow_http``, for a lab's own network and the tests), and the
operator can turn the feature off (``own_storage``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ai4lab.core.db import UserStorageConfig, session_scope
from ai4lab.core.errors import PlatformError
from ai4lab.core.remote_storage import StorageBackend
from ai4lab.core.secret_box import box_for

if TYPE_CHECKING:
    from ai4lab.core.settings import Settings


def own_backend(settings: Settings, user: str) -> StorageBackend | None:
    """The storage ``user`` connected, with its password opened; None: they use the operator's."""
    with session_scope(settings.db_url) as db:
        row = db.get(UserStorageConfig, user)
        if row is None:
            return None
        config, sealed = dict(row.config), row.password
    password = box_for(settings.state).open(sealed) or ""
    return StorageBackend.model_validate({**config, "password": password})


def backend_for(settings: Settings, user: str) -> StorageBackend:
    """Where ``user``'s storage lives: their own server, else the operator's."""
    return own_backend(settings, user) or settings.storage


def check_allowed(settings: Settings, backend: StorageBackend) -> None:
    """Refuse (400) what the operator does not allow users to connect."""
    if not settings.own_storage:
        raise PlatformError(403, "this platform does not let users connect their own storage; ask an admin")
    if not backend.remote:
        raise PlatformError(
            400, "type: connect an s3 or webdav storage (DELETE /me/storage goes back to the platform's)"
        )
    url = backend.endpoint_url if backend.type == "s3" else backend.url
    if url.startswith("http://") and not settings.own_storage_allow_http:
        raise PlatformError(400, f"{url}: use an https:// address (this platform does not connect to plain http)")


def save(settings: Settings, user: str, backend: StorageBackend) -> None:
    config = backend.model_dump(mode="json", exclude={"password"})
    sealed = box_for(settings.state).seal(backend.password.get_secret_value())
    with session_scope(settings.db_url) as db:
        row = db.get(UserStorageConfig, user)
        if row is None:
            db.add(UserStorageConfig(owner=user, config=config, password=sealed))
        else:
            row.config, row.password = config, sealed


def forget(settings: Settings, user: str) -> bool:
    with session_scope(settings.db_url) as db:
        row = db.get(UserStorageConfig, user)
        if row is None:
            return False
        db.delete(row)
        return True


def view(settings: Settings, user: str) -> dict[str, Any]:
    """What the user is shown of their storage: where it is and whose, never the password."""
    own = own_backend(settings, user)
    backend = own or settings.storage
    return {"source": "own" if own else "platform", **backend.describe()}


def connect(settings: Settings, user: str, backend: StorageBackend) -> None:
    """Check that the storage answers with these credentials, then keep it as ``user``'s (400 with the reason)."""
    from ai4lab.core.mounts import unmount
    from ai4lab.core.storage import UserStorage

    check_allowed(settings, backend)
    try:
        store = UserStorage(*backend.fsspec(user))
        store.fs.ls(store.root or "", detail=False)
    except Exception as e:  # noqa: BLE001 - any failure of the server or the credentials is the answer
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PlatformError(400, f"cannot reach your {backend.type} storage at {backend.url}: {reason}") from None
    save(settings, user, backend)
    unmount(settings, user)  # the next session or job mounts the new one


def disconnect(settings: Settings, user: str) -> bool:
    """Back to the operator's storage; False when the user had none of their own."""
    from ai4lab.core.mounts import unmount

    if not forget(settings, user):
        return False
    unmount(settings, user)
    return True
