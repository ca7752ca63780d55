"""The CVAT annotation tool as one Nomad job (pure builder, like ``jobs.render_job``).

CVAT is several programs that share one network namespace (group network mode
``bridge``, so they talk over ``127.0.0.1``): PostgreSQL (``db``), Redis
(``cache``), the Django server (``main``: API on ``server_port``) and the UI
(nginx serving the web app and proxying ``/api`` to the server). The database
and CVAT's data folder are kept in the owner's storage (``<storage>/<data_dir>``
through the rclone sidecar), so a stopped CVAT comes back with its tasks. The
admin password is given per deployment (the caller generates and keeps it).
"""

from __future__ import annotations

from typing import Any

from ai4lab.nomad.config import Federation, NomadDefaults, duration_ns, load_defaults
from ai4lab.nomad.jobs import MAIN_TASK, NomadJobSpec, render_job


def _task(
    name: str,
    image: str,
    env: dict[str, str],
    cpu: int,
    memory: int,
    volumes: list[str],
    hook: str | None = None,
    ports: list[str] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {"image": image, "force_pull": False}
    if volumes:
        config["volumes"] = volumes
    if ports:
        config["ports"] = ports
    task: dict[str, Any] = {
        "Name": name,
        "Driver": "docker",
        "Config": config,
        "Env": env,
        "Resources": {"CPU": cpu, "MemoryMB": memory},
    }
    if hook:
        task["Lifecycle"] = {"Hook": hook, "Sidecar": True}
    return task


def render_cvat_job(
    spec: NomadJobSpec,
    admin_password: str,
    *,
    defaults: NomadDefaults | None = None,
    federation: Federation | None = None,
) -> dict[str, Any]:
    """The Nomad ``Job`` running CVAT for ``spec`` (kind ``tool``, with the owner's storage)."""
    if spec.kind != "tool":
        raise ValueError(f"CVAT is a tool deployment, not a {spec.kind}")
    if spec.storage is None:
        raise ValueError("CVAT keeps its database and data in the owner's storage: give storage")
    if len(admin_password) < 12:
        raise ValueError("the CVAT admin password must have at least 12 characters")
    defaults = defaults or load_defaults()
    cv = defaults.cvat
    base = spec.model_copy(
        update={
            "tool": None,
            "image": cv.server_image,
            "command": [],
            "ports": {"ui": cv.ui_port, "server": cv.server_port},
            "health_path": "/api/server/about",
            "memory_mb": max(spec.memory_mb, cv.memory_mb),
        }
    )
    job = render_job(base, defaults=defaults, federation=federation)
    group = job["TaskGroups"][0]
    group["Networks"][0]["Mode"] = "bridge"
    # the UI answers the users; the server's API is checked through it
    group["Services"][0]["Checks"][0].update(Type="http", Path="/api/server/about", Method="GET")
    group["Services"][1]["Checks"][0] = {**group["Services"][1]["Checks"][0], "Type": "tcp"}
    group["Services"][1]["Checks"][0].pop("Path", None)
    group["Services"][1]["Checks"][0].pop("Method", None)
    host = f"{defaults.storage.host_dir.rstrip('/')}/{job['ID']}/{cv.data_dir}"
    db_env = {
        "POSTGRES_USER": "root",
        "POSTGRES_DB": "cvat",
        "POSTGRES_HOST_AUTH_METHOD": "trust",
        "PGDATA": "/var/lib/postgresql/data/pgdata",
    }
    common = {
        "CVAT_POSTGRES_HOST": "127.0.0.1",
        "CVAT_POSTGRES_USER": "root",
        "CVAT_POSTGRES_DBNAME": "cvat",
        "CVAT_REDIS_INMEM_HOST": "127.0.0.1",
        "CVAT_REDIS_INMEM_PORT": "6379",
        "CVAT_REDIS_ONDISK_HOST": "127.0.0.1",
        "CVAT_REDIS_ONDISK_PORT": "6379",
        "ALLOWED_HOSTS": "*",
    }
    main = next(t for t in group["Tasks"] if t["Name"] == MAIN_TASK)
    main["Config"]["args"] = ["init", "run", "server"]
    main["Config"].pop("ports", None)
    main["Config"]["volumes"] = [f"{host}/data:/home/django/data:shared", f"{host}/logs:/home/django/logs:shared"]
    main["Env"] = {
        **main.get("Env", {}),
        **common,
        "DJANGO_SUPERUSER_USERNAME": cv.admin_user,
        "DJANGO_SUPERUSER_PASSWORD": admin_password,
        "DJANGO_SUPERUSER_EMAIL": f"{cv.admin_user}@localhost",
        "CVAT_SERVER_PORT": str(cv.server_port),
    }
    main["Env"].pop("AI4LAB_STORAGE", None)
    main["RestartPolicy"] = {"Attempts": 3, "Mode": "delay", "Interval": duration_ns("5m"), "Delay": duration_ns("30s")}
    tasks = [t for t in group["Tasks"] if t["Name"] != MAIN_TASK]
    tasks += [
        _task("db", cv.db_image, db_env, 500, 1024, [f"{host}/db:/var/lib/postgresql/data:shared"], hook="prestart"),
        _task("cache", cv.cache_image, {}, 200, 512, [], hook="prestart"),
        main,
        _task(
            "ui",
            cv.ui_image,
            {"CVAT_SERVER_HOST": "127.0.0.1", "CVAT_SERVER_PORT": str(cv.server_port)},
            200,
            256,
            [],
            hook="poststart",
            ports=["ui"],
        ),
    ]
    group["Tasks"] = tasks
    job["Meta"] |= {"tool": "cvat", "cvat_admin_user": cv.admin_user}
    return job
