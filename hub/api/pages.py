"""The marketplace as web pages of the platform API: list with search and filters, and item details
with "Try it" and "Deploy" (plain HTML forms; a little fetch() for try and deploy).

The pages read the catalog object directly (``search``, ``facets``, ``get``); the buttons call the
platform API itself (``POST /catalog/modules/{id}/try``, ``POST /deployments``) with the login cookie
the browser already carries. Everything is escaped by Jinja (autoescape); item descriptions are
rendered and sanitised by ``description_html``.
"""

import asyncio
import os
import subprocess
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from ai4lab.api.auth import HubUser
from ai4lab.api.context import ApiContext, User
from ai4lab.catalog.deploy_config import deploy_config
from ai4lab.catalog.model import KINDS, CatalogItem
from ai4lab.catalog.registry import Viewer
from ai4lab.catalog.render import description_html
from ai4lab.core import accounts
from ai4lab.core.envs import EnvBuildError
from ai4lab.core.errors import PlatformError
from ai4lab.deploy.predict_args import describe_predict as read_predict_args

PER_PAGE = 12
FILTERS = ("task", "category", "tag", "library")

_env = Environment(loader=PackageLoader("ai4lab", "templates/marketplace"), autoescape=select_autoescape(["html"]))


def _safe_link(url: str) -> str | None:
    """Only http(s) and mailto links are made clickable (metadata is untrusted)."""
    return url if urlsplit(url).scheme.lower() in ("http", "https", "mailto") else None


def build_router(api: ApiContext) -> APIRouter:
    prefix, settings, catalog = api.prefix, api.settings, api.catalog
    router = APIRouter(prefix=f"{prefix}/marketplace", include_in_schema=False)
    hub_home = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/home"

    def who(user: HubUser) -> tuple[Viewer, str]:
        acc = accounts.get_user(settings.db_url, user.name) or accounts.ensure_user(
            settings.db_url, user.name, admin=user.admin
        )
        return Viewer(name=user.name, vo=acc.vo, admin=user.admin), acc.role

    def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = _env.get_template(template).render(prefix=prefix, hub_home=hub_home, **context)
        return HTMLResponse(html, status_code=status)

    def describe_predict(item: CatalogItem) -> list[dict[str, Any]]:
        return read_predict_args(item, settings.envs_dir)

    async def predict_fields(item: CatalogItem) -> tuple[list[dict[str, Any]], str | None]:
        if not item.run.package_path or not item.run.entry_point:
            return [], None
        try:
            return await asyncio.to_thread(describe_predict, item), None
        except (EnvBuildError, RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            return [], f"the module could not be loaded here: {reason}"

    @router.get("", response_class=HTMLResponse)
    @router.get("/", response_class=HTMLResponse)
    async def listing(
        user: User,
        q: str = "",
        kind: str = "modules",
        task: str = "",
        category: str = "",
        tag: str = "",
        library: str = "",
        gpu: str = "",
        page: str = "1",
    ) -> HTMLResponse:
        viewer, _ = who(user)
        kind = kind if kind in KINDS else "modules"
        gpu = gpu if gpu in ("yes", "no") else ""
        filters: dict[str, Any] = {"task": task, "category": category, "tag": tag, "library": library}
        number = max(1, int(page)) if page.isdigit() else 1
        result = catalog.search(
            KINDS[kind],
            q=q.strip() or None,
            **{k: (v or None) for k, v in filters.items()},  # type: ignore[arg-type]  # the filters are str | None
            gpu={"yes": True, "no": False}.get(gpu),
            page=number,
            per_page=PER_PAGE,
            viewer=viewer,
        )
        facets = catalog.facets(KINDS[kind], viewer)
        state = {"q": q, "kind": kind, **filters, "gpu": gpu}

        def link(**change: Any) -> str:
            params = {k: v for k, v in {**state, **change}.items() if v not in ("", None, 1)}
            return f"{prefix}/marketplace?" + urlencode(params)

        return render(
            "list.html",
            user=user,
            state=state,
            result=result,
            facets=facets,
            prev_url=link(page=number - 1) if number > 1 else None,
            next_url=link(page=number + 1) if number < result["pages"] else None,
            filter_names={"task": "tasks", "category": "categories", "tag": "tags", "library": "libraries"},
        )

    @router.get("/{kind}/{item_id}", response_class=HTMLResponse)
    async def detail(kind: str, item_id: str, user: User) -> HTMLResponse:
        viewer, role = who(user)
        item = catalog.get(KINDS[kind], item_id, viewer) if kind in KINDS else None
        if item is None:
            return render("missing.html", status=404, user=user, kind=kind, item_id=item_id)
        form = deploy_config(
            item, quota=settings.quotas[role], role=role, gpus=settings.gpus, hard=settings.resources_hard
        )
        fields, fields_problem = await predict_fields(item) if item.kind == "module" else ([], None)
        links = [(name, url, _safe_link(url)) for name, url in item.links.items()]
        return render(
            "detail.html",
            user=user,
            kind=kind,
            item=item,
            role=role,
            form=form,
            links=links,
            description=description_html(item.description),
            fields=fields,
            fields_problem=fields_problem,
            runs_locally=bool(item.run.package_path and item.run.entry_point),
        )

    @router.get("/{kind}/{item_id}/predict-args", response_class=JSONResponse)
    async def predict_args(kind: str, item_id: str, user: User) -> list[dict[str, Any]]:
        """The predict fields of a module that runs here (for forms and notebook widgets)."""
        viewer, _ = who(user)
        item = catalog.get(KINDS[kind], item_id, viewer) if kind in KINDS else None
        if item is None:
            raise PlatformError(404, f"no {kind} {item_id!r} in the catalog")
        if item.kind != "module" or not item.run.package_path:
            raise PlatformError(400, f"{item_id} has no local package")
        fields, problem = await predict_fields(item)
        if problem:
            raise PlatformError(500, problem)
        return fields

    return router
