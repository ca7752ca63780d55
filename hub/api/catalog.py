"""``/catalog``: browse and search (anyone), deploy forms, *Try*, training arguments, packages, publish, admin."""

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ai4lab.api.answers import Refreshed, Removed, Source, Withdrawn
from ai4lab.api.auth import HubUser
from ai4lab.api.context import ApiContext, MaybeUser, User
from ai4lab.catalog import added_sources
from ai4lab.catalog import publish as pub
from ai4lab.catalog.check import last_reports, run_check
from ai4lab.catalog.deploy_config import deploy_config
from ai4lab.catalog.model import KINDS, CatalogItem
from ai4lab.catalog.package import package_folder, package_tarball
from ai4lab.catalog.registry import ANONYMOUS, Viewer
from ai4lab.catalog.render import description_html
from ai4lab.core.errors import PlatformError
from ai4lab.core.isolation import Accounts
from ai4lab.core.storage import in_user_storage
from ai4lab.deploy.lifecycle import Caller
from ai4lab.deploy.on_nomad import NomadJobs
from ai4lab.deploy.trainings import LocalJobs
from ai4lab.deploy.trying import try_module

KindPath = Literal["modules", "tools"]


class AddSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a short name for the source: lower-case letters, digits, '.', '_', '-'")
    git: str = Field(description="git URL of a module repository or of an AI4OS catalog repository")
    kind: Literal["module", "tool"] | None = Field(default=None, description="default: from the metadata")
    branch: str | None = Field(default=None, description="branch or tag (default: the repository's default)")


def build_router(api: ApiContext) -> APIRouter:
    settings, catalog = api.settings, api.catalog
    router = APIRouter(prefix=f"{api.prefix}/catalog", tags=["catalog"])
    max_bytes = int(settings.max_upload_mb * 2**20)

    def account(user: HubUser | None) -> tuple[str, str | None]:
        """Role and VO of the caller (anonymous callers are basic, of no VO)."""
        if user is None:
            return "basic", None
        caller = api.caller(user)
        return caller.role, caller.vo

    def viewer(user: HubUser | None) -> Viewer:
        if user is None:
            return ANONYMOUS
        return Viewer(name=user.name, vo=account(user)[1], admin=user.admin)

    def find(kind: KindPath, item_id: str, user: HubUser | None) -> CatalogItem:
        item = catalog.get(KINDS[kind], item_id, viewer(user))
        if item is None:
            raise PlatformError(404, f"no {KINDS[kind]} {item_id!r} in the catalog")
        return item

    def require_admin(user: HubUser) -> None:
        if not user.admin:
            raise PlatformError(403, "admins only")

    @router.get(
        "/sources", summary="The catalog sources, with their items and last fetch (admin)", response_model=list[Source]
    )
    async def list_sources(user: User) -> list[dict[str, Any]]:
        require_admin(user)
        return catalog.source_views()

    @router.post(
        "/sources",
        status_code=201,
        summary="Add a module or AI4OS catalog repository from git (admin)",
        response_model=Source,
    )
    async def add_source(body: AddSource, user: User) -> dict[str, Any]:
        require_admin(user)
        cfg = await asyncio.to_thread(added_sources.detect, body.name, body.git, body.branch, body.kind)
        added_sources.add(settings, cfg)
        catalog.reload()
        await asyncio.to_thread(catalog.remotes[cfg.name].refresh)
        catalog.reload()
        return next(v for v in catalog.source_views() if v["name"] == cfg.name)

    @router.delete("/sources/{name}", summary="Remove a source added at run time (admin)", response_model=Removed)
    async def delete_source(name: str, user: User) -> dict[str, str]:
        require_admin(user)
        added_sources.remove(settings, name)
        catalog.reload()
        return {"removed": name}

    @router.get("/checks", summary="The last compatibility report of every checked item (admin)")
    async def checks(user: User) -> list[dict[str, Any]]:
        require_admin(user)
        return last_reports(settings)

    @router.get("/errors", summary="Items that could not be loaded, per source (admin)")
    async def errors(user: User) -> list[dict[str, Any]]:
        require_admin(user)
        return [e.model_dump() for e in catalog.errors()]

    @router.post("/refresh", summary="Fetch remote catalog sources again (admin)", response_model=Refreshed)
    async def refresh(user: User) -> dict[str, Any]:
        require_admin(user)
        errs = await asyncio.to_thread(catalog.refresh, True)
        counts = {k: catalog.search(k, per_page=1)["total"] for k in ("module", "tool")}
        return {"modules": counts["module"], "tools": counts["tool"], "errors": [e.model_dump() for e in errs]}

    @router.get("/{kind}", summary="List and search modules or tools")
    async def list_items(
        kind: KindPath,
        user: MaybeUser,
        q: str | None = Query(None, description="full-text search in title, tags, summary, description"),
        task: str | None = None,
        category: str | None = None,
        tag: str | None = None,
        library: str | None = None,
        data_type: str | None = None,
        gpu: bool | None = Query(None, description="only items that can (true) or cannot (false) use a GPU"),
        source: str | None = None,
        sort: str = Query("relevance", description="relevance, title, updated or -updated"),
        page: int = Query(1, ge=1),
        per_page: int = Query(20, ge=1, le=200),
        facets: bool = Query(False, description="also return the values each filter can take"),
    ) -> Response:
        query: dict[str, Any] = {
            "q": q,
            "task": task,
            "category": category,
            "tag": tag,
            "library": library,
            "data_type": data_type,
            "gpu": gpu,
            "source": source,
            "sort": sort,
            "page": page,
            "per_page": per_page,
            "viewer": viewer(user),
        }
        try:
            if not facets:  # the common case: pre-encoded items, no re-encoding
                return Response(catalog.search_json(KINDS[kind], **query), media_type="application/json")
            result = catalog.search(KINDS[kind], **query)
        except ValueError as e:
            raise PlatformError(400, str(e)) from None
        result["facets"] = catalog.facets(KINDS[kind], viewer(user))
        return JSONResponse(result)

    @router.post("/{kind}", status_code=201, summary="Publish a module or tool (role intermediate or advanced)")
    async def publish(kind: KindPath, body: pub.PublishRequest, user: User) -> dict[str, Any]:
        role, vo = account(user)

        def in_storage(path: str) -> Path:
            root = settings.user_storage(user.name)
            folder = in_user_storage(root, path, "package_path")
            if not folder.is_dir():
                raise PlatformError(400, f"no folder {path!r} in your storage")
            # the package is read again later (builds, downloads): no link in it may lead out
            for inner in pub.symlinks_in(folder):
                in_user_storage(root, inner.relative_to(os.path.realpath(root)).as_posix(), "package_path")
            return folder

        resolve: Callable[[str], Path] = in_storage
        taken = catalog.ids_not_published()
        clone: Path | None = None
        try:
            publisher = Accounts.from_settings(settings).ensure(user.name)
            if body.git_url:
                if body.package_path:
                    raise PlatformError(400, "give package_path or git_url, not both")
                cloned, commit = await asyncio.to_thread(pub.clone_as, publisher, body.git_url, body.git_ref)
                clone = cloned
                body = pub.from_clone(body, cloned, commit, publisher.uid)

                def resolve(_path: str) -> Path:  # the clone stands for the storage folder
                    return cloned

            row = pub.publish(
                settings.db_url,
                body,
                kind=KINDS[kind],
                owner=user.name,
                role=role,
                vo=vo,
                resolve_package=resolve,
                existing_ids=taken,
                packages_root=settings.published_root,
                owner_ids=(publisher.uid, publisher.gid) if settings.isolating else None,
            )
        except PlatformError:
            raise
        except ValueError as e:  # metadata text that does not parse
            raise PlatformError(400, f"invalid metadata: {e}") from None
        finally:
            if clone is not None:
                shutil.rmtree(clone.parent, ignore_errors=True)
        catalog.reload()
        return _detail(find(kind, row.id, user))

    @router.get("/{kind}/{item_id}", summary="One item, with its rendered description and resource defaults")
    async def get_item(kind: KindPath, item_id: str, user: MaybeUser) -> dict[str, Any]:
        return _detail(find(kind, item_id, user))

    @router.get("/{kind}/{item_id}/config", summary="The deploy form of an item for you (user.yaml shape)")
    async def get_config(
        kind: KindPath,
        item_id: str,
        user: MaybeUser,
        purpose: Literal["inference", "training"] = "inference",
    ) -> dict[str, Any]:
        item = find(kind, item_id, user)
        role = account(user)[0]
        if settings.backend == "nomad":  # a Nomad cluster: its GPUs and the datacenters of the user's project
            nomad = api.registry.lifecycles[("module", "nomad")]
            assert isinstance(nomad, NomadJobs)
            return await nomad.form(item, api.caller(user) if user else Caller(name=""), purpose)
        return deploy_config(
            item,
            quota=settings.quotas[role],
            role=role,
            gpus=settings.gpus,
            purpose=purpose,
            hard=settings.resources_hard,
        )

    @router.post("/{kind}/{item_id}/check", summary="Compatibility report: does the item run here, and why not (admin)")
    async def check_item(kind: KindPath, item_id: str, user: User) -> dict[str, Any]:
        require_admin(user)
        return await asyncio.to_thread(run_check, find(kind, item_id, user), settings)

    @router.post("/{kind}/{item_id}/promote", summary="Make a published item visible to everyone (admin)")
    async def promote(kind: KindPath, item_id: str, user: User) -> dict[str, Any]:
        require_admin(user)
        item = find(kind, item_id, user)
        if item.source != "published":
            raise PlatformError(400, f"{item_id!r} comes from source {item.source!r}, not a publication")
        pub.set_visibility(settings.db_url, item_id, "public")
        catalog.reload()
        return _detail(find(kind, item_id, user))

    @router.delete(
        "/{kind}/{item_id}", summary="Withdraw a published item (its owner or an admin)", response_model=Withdrawn
    )
    async def withdraw(kind: KindPath, item_id: str, user: User) -> dict[str, str]:
        item = find(kind, item_id, user)
        if item.source != "published":
            raise PlatformError(
                400, f"{item_id!r} comes from source {item.source!r}: only publications can be withdrawn"
            )
        if item.owner != user.name and not user.admin:
            raise PlatformError(403, "only its owner or an admin can withdraw it")
        pub.unpublish(settings.db_url, item_id)
        catalog.reload()
        return {"withdrawn": item_id}

    # -- a module's code: training arguments, the package, Try ------------------------------------
    def local_module(item_id: str, user: HubUser) -> CatalogItem:
        item = find("modules", item_id, user)
        if not item.run.package_path:
            code = item.links.get("source_code")
            where = f": clone its code from {code}" if code else ""
            raise PlatformError(400, f"{item_id} has no package on this platform{where}")
        return item

    @router.get("/modules/{item_id}/train-args", summary="The module's training arguments (types, ranges)")
    async def train_args(item_id: str, user: User) -> dict[str, Any]:
        item = local_module(item_id, user)
        jobs = api.registry.lifecycles[("training", "local")]
        assert isinstance(jobs, LocalJobs)
        return await asyncio.to_thread(jobs.describe_args, item)

    @router.get("/modules/{item_id}/package", summary="The module's source package as .tar.gz (open in IDE)")
    async def package(item_id: str, user: User) -> Response:
        item = local_module(item_id, user)
        try:
            folder = package_folder(settings, Path(item.run.package_path or ""))
        except PlatformError as e:
            raise PlatformError(e.status, f"{item_id}: {e}") from None
        data = await asyncio.to_thread(package_tarball, folder)
        return Response(
            data,
            media_type="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="{item_id}.tar.gz"'},
        )

    @router.post("/modules/{item_id}/try", summary="One prediction without a deployment (try me)")
    async def try_it(item_id: str, request: Request, user: User) -> Response:
        item = find("modules", item_id, user)
        if int(request.headers.get("content-length") or 0) > max_bytes:
            raise PlatformError(413, f"upload larger than {settings.max_upload_mb:g} MB")
        form = await request.form(max_part_size=max_bytes)
        answer = await try_module(api.platform, item, form, user.name, request.headers.get("accept", ""), max_bytes)
        if answer.content is not None:
            return Response(answer.content, media_type=answer.content_type)
        return JSONResponse(answer.json)

    return router


def _detail(item: CatalogItem) -> dict[str, Any]:
    out = item.model_dump(exclude={"metadata"})
    out.update(item.summary_dict())
    out["description_html"] = description_html(item.description)
    out["metadata"] = item.metadata
    return out
