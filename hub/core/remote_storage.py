"""Where users' storage lives when it is not the state folder: an S3 bucket or a WebDAV server.

Why two views of one place: the platform API reads and writes it with fsspec
(s3fs, webdav4), which needs nothing from the machine; sessions, trainings,
batch jobs and module servers see it as an ordinary folder, ``storage/``,
through an rclone FUSE mount (``ai4lab.core.mounts``), so that code written
for files (a notebook, a DEEPaaS module, VS Code) runs unchanged, as in AI4OS,
where Nextcloud is mounted with rclone. Both views are configured from the
one description here, and its credentials go to fsspec as options and to
rclone as environment variables: never on a command line, never in a log.
"""

from __future__ import annotations

import subprocess
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class StorageBackend(BaseModel):
    """One storage server: the operator's for everyone, or a user's own."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["local", "s3", "webdav"] = Field(
        default="local", description="local (a folder of the state folder), s3 (MinIO, Ceph, AWS) or webdav (Nextcloud)"
    )
    url: str = Field(
        default="",
        description="s3: s3://bucket[/prefix]; webdav: the server's files URL "
        "(Nextcloud: https://HOST/remote.php/dav/files/USER)",
    )
    endpoint_url: str = Field(default="", description="S3 endpoint of MinIO or Ceph ('' : AWS)")
    region: str = Field(default="", description="S3 region ('' : the endpoint's default)")
    vendor: Literal["nextcloud", "owncloud", "other"] = Field(default="other", description="WebDAV server kind")
    username: str = Field(default="", description="S3 access key id, or WebDAV user")
    password: SecretStr = Field(default=SecretStr(""), description="S3 secret key, or WebDAV password (app token)")
    per_user_folder: bool = Field(
        default=True,
        description="each user in a folder of their name below the URL (the operator's storage for everyone); "
        "False: the URL is the user's own storage",
    )

    @field_validator("url")
    @classmethod
    def _url_fits_type(cls, url: str, info: Any) -> str:
        kind = info.data.get("type", "local")
        if kind == "s3" and not (url.startswith("s3://") and len(url) > 5):
            raise ValueError("an S3 storage needs url: s3://BUCKET[/PREFIX]")
        if kind == "webdav" and not url.startswith(("https://", "http://")):
            raise ValueError("a WebDAV storage needs url: https://HOST/PATH (Nextcloud: .../remote.php/dav/files/USER)")
        return url.rstrip("/")

    @property
    def remote(self) -> bool:
        return self.type != "local"

    def _folder(self, user: str) -> str:
        """The user's folder below the URL: the bucket and prefix on S3, the path below the base URL on WebDAV."""
        base = self.url.removeprefix("s3://") if self.type == "s3" else ""
        return "/".join(p for p in (base, user if self.per_user_folder else "") if p)

    def fsspec(self, user: str) -> tuple[str, dict[str, Any]]:
        """The fsspec URL of ``user``'s storage and the file system's options (credentials included)."""
        secret = self.password.get_secret_value()
        if self.type == "s3":
            client: dict[str, Any] = {"region_name": self.region} if self.region else {}
            # one file system per user and server, reused (fsspec keeps instances by their options); no listing
            # cache: sessions and jobs write through the mount beside it
            options = {"key": self.username, "secret": secret, "client_kwargs": client, "use_listings_cache": False}
            if self.endpoint_url:
                options["endpoint_url"] = self.endpoint_url
            return f"s3://{self._folder(user)}", options
        if self.type == "webdav":
            auth = (self.username, secret) if self.username else None
            return f"webdav://{self._folder(user)}", {"base_url": self.url, "auth": auth}
        raise ValueError("a local storage has no remote URL")

    def rclone(self, user: str, name: str = "ai4lab") -> tuple[dict[str, str], str]:
        """rclone's configuration of the remote ``name`` as environment variables, and the path to mount."""
        key = f"RCLONE_CONFIG_{name.upper()}_"
        secret = self.password.get_secret_value()
        if self.type == "s3":
            env = {"TYPE": "s3", "PROVIDER": "Other" if self.endpoint_url else "AWS", "ACCESS_KEY_ID": self.username,
                   "SECRET_ACCESS_KEY": secret, "ENDPOINT": self.endpoint_url, "REGION": self.region,
                   "ENV_AUTH": "false"}  # fmt: skip
        elif self.type == "webdav":
            env = {"TYPE": "webdav", "URL": self.url, "VENDOR": self.vendor, "USER": self.username,
                   "PASS": obscure(secret) if secret else ""}  # fmt: skip
        else:
            raise ValueError("a local storage is not mounted")
        return {key + k: v for k, v in env.items() if v}, f"{name}:{self._folder(user)}"

    def describe(self) -> dict[str, Any]:
        """What may be shown of it (to its owner, an admin, a log): everything but the password."""
        return self.model_dump(exclude={"password"}) | {"password": "***" if self.password.get_secret_value() else ""}


def obscure(secret: str) -> str:
    """rclone's reversible encoding of a password in its configuration (it does not take plain ones)."""
    done = subprocess.run(["rclone", "obscure", "-"], input=secret, capture_output=True, text=True, check=True)
    return done.stdout.strip()
