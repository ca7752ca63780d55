"""The platform API's authorization matrix: every route of its OpenAPI schema, four callers.

Why a matrix: each route checks ownership itself (``visible()``, ``require_admin``,
the catalog's viewer), so one forgotten check is one leak. This file states, as data,
what every route must answer to the owner of a resource, to another (non-admin) user,
to an admin and to a caller without a token, and asks the running platform with the
real ids of real resources: a running module deployment, a finished training, a
Flower server, a pipeline, a private published catalog item and a stored file.

The route list is read from the running platform's ``openapi.json``: a route without
an entry here fails the suite, and so does an entry whose route is gone, so that a new
route cannot ship without someone deciding who may call it.

The rules behind the numbers: the owner gets 2xx (or the route's own 4xx where no
real resource of that kind can exist here, said in ``why``); another user never sees
someone else's things (404, or 403 on admin-only routes); an admin may act on
everyone's deployments and catalog items but has a storage of their own; no token is
401, except public catalog browsing. Requests with a body carry one that passes
validation, so that a status tells about authorization, not about the body.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest

from tests.integration.test_catalog_api import METADATA
from tests.integration.test_module_deployments import wait_status as wait_running
from tests.integration.test_trainings import wait_status as wait_ended
from tests.platform_harness import Platform, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]
API = "/services/ai4lab"

Caller = Literal["owner", "other", "admin", "anonymous"]
#: The owner last: the other callers are refused first, so a leak cannot hide behind a resource
#: the owner already stopped or deleted.
CALLERS: tuple[Caller, ...] = ("other", "anonymous", "admin", "owner")

#: One diabetes row (load_diabetes(scaled=False), row 0) as the module's ``rows`` argument wants it.
ROWS = "[[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]"
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@dataclass(frozen=True)
class Entry:
    """Who gets what from one route.

    ``path``: below /services/ai4lab, with ``{resource}`` placeholders filled with real ids
    (``{fresh_*}``: a new resource for each request, for calls that stop or delete it);
    several paths check the route against several kinds of resource.
    ``body``: the name of a request builder in ``BODIES``.
    """

    path: str | tuple[str, ...]
    owner: int
    other: int
    admin: int
    anonymous: int
    body: str | None = None
    why: str = ""

    def paths(self) -> tuple[str, ...]:
        return (self.path,) if isinstance(self.path, str) else self.path


E = Entry
DEP = ("{module}", "{training}", "{flower}", "{pipeline}")
PROXY = "Swagger/DEEPaaS of the module deployment, proxied"
NO_DEEPAAS_METHOD = "DEEPaaS has no such method: its 405 reaching owner and admin shows the proxy let them through"
NO_CVAT = ("CVAT runs only on the Nomad backend: the Flower server stands in, so the owner and admin get the "
           "route's 400 'not a CVAT deployment', after the ownership check")

# fmt: off
#: (METHOD, path below /services/ai4lab as in the OpenAPI schema) -> expected codes.
MATRIX: dict[tuple[str, str], Entry] = {
    # -- who am I, accounts, admin views
    ("GET", "/me"):                                   E("/me", 200, 200, 200, 401),
    ("GET", "/me/oidc-token"):                        E("/me/oidc-token", 404, 404, 404, 401,
                                                        why="local accounts have no provider token; OIDC users get "
                                                            "their own (tests/integration/test_oidc.py)"),
    ("GET", "/users"):                                E("/users", 403, 403, 200, 401),
    ("GET", "/admin/usage"):                          E("/admin/usage", 403, 403, 200, 401),
    # -- deployments
    ("GET", "/deployments"):                          E("/deployments", 200, 200, 200, 401),
    ("POST", "/deployments"):                         E("/deployments", 201, 404, 404, 401, body="pipeline",
                                                        why="a pipeline of the owner's deployments: nobody else "
                                                            "may chain them, admins included (steps are the caller's)"),
    ("GET", "/deployments/{dep_id}"):                 E(tuple(f"/deployments/{d}" for d in DEP), 200, 404, 200, 401),
    ("DELETE", "/deployments/{dep_id}"):              E("/deployments/{fresh_pipeline}", 200, 404, 200, 401),
    ("GET", "/deployments/{dep_id}/logs"):            E(("/deployments/{module}/logs", "/deployments/{training}/logs",
                                                         "/deployments/{flower}/logs"), 200, 404, 200, 401),
    ("GET", "/deployments/{dep_id}/metrics"):         E("/deployments/{training}/metrics", 200, 404, 200, 401),
    ("POST", "/deployments/{dep_id}/predict"):        E("/deployments/{module}/predict", 200, 404, 200, 401,
                                                        body="rows_json"),
    ("GET", "/deployments/{dep_id}/api/{path}"):      E("/deployments/{module}/api/v2/models/", 200, 404, 200, 401,
                                                        why=PROXY),
    ("HEAD", "/deployments/{dep_id}/api/{path}"):     E("/deployments/{module}/api/v2/models/", 405, 404, 405, 401,
                                                        why=NO_DEEPAAS_METHOD),
    ("OPTIONS", "/deployments/{dep_id}/api/{path}"):  E("/deployments/{module}/api/v2/models/", 405, 404, 405, 401,
                                                        why=NO_DEEPAAS_METHOD),
    ("POST", "/deployments/{dep_id}/api/{path}"):     E("/deployments/{module}/api/v2/models/ai4lab-diabetes/predict/",
                                                        200, 404, 200, 401, body="rows_form", why=PROXY),
    ("PUT", "/deployments/{dep_id}/api/{path}"):      E("/deployments/{module}/api/v2/models/", 405, 404, 405, 401,
                                                        body="raw", why=NO_DEEPAAS_METHOD),
    ("PATCH", "/deployments/{dep_id}/api/{path}"):    E("/deployments/{module}/api/v2/models/", 405, 404, 405, 401,
                                                        body="raw", why=NO_DEEPAAS_METHOD),
    ("DELETE", "/deployments/{dep_id}/api/{path}"):   E("/deployments/{module}/api/v2/models/", 405, 404, 405, 401,
                                                        why=NO_DEEPAAS_METHOD),
    # -- tools: Flower and CVAT
    ("GET", "/deployments/{dep_id}/flower"):          E("/deployments/{flower}/flower", 200, 404, 200, 401),
    ("GET", "/deployments/{dep_id}/flower/token"):    E("/deployments/{flower}/flower/token", 200, 404, 200, 401),
    ("POST", "/deployments/{dep_id}/flower/token"):   E("/deployments/{flower}/flower/token", 200, 404, 200, 401,
                                                        why="rotation: the server keeps running, so it can repeat"),
    ("GET", "/deployments/{dep_id}/cvat"):            E("/deployments/{flower}/cvat", 400, 404, 400, 401, why=NO_CVAT),
    ("POST", "/deployments/{dep_id}/cvat/export"):    E("/deployments/{flower}/cvat/export", 400, 404, 400, 401,
                                                        body="cvat_export", why=NO_CVAT),
    # -- storage: each caller's own; nobody reaches the owner's files (admins neither)
    ("GET", "/storage"):                              E("/storage", 200, 200, 200, 401),
    ("GET", "/storage/{path}"):                       E(("/storage/{file}", "/storage/datasets"), 200, 404, 404, 401),
    ("PUT", "/storage/{path}"):                       E("/storage/authz/put.txt", 200, 200, 200, 401, body="raw",
                                                        why="writes into the caller's own storage (checked below)"),
    ("POST", "/storage/{path}"):                      E("/storage/authz/uploads", 200, 200, 200, 401, body="upload"),
    ("DELETE", "/storage/{path}"):                    E("/storage/{fresh_file}", 200, 404, 404, 401),
    ("PATCH", "/storage/{path}"):                     E("/storage/{fresh_file}", 200, 404, 404, 401, body="move"),
    ("GET", "/me/storage"):                           E("/me/storage", 200, 200, 200, 401),
    ("PUT", "/me/storage"):                           E("/me/storage", 400, 400, 400, 401, body="own_storage",
                                                        why="each caller connects their own: a server that does not "
                                                            "answer is a 400 for everyone, and nothing is kept"),
    ("DELETE", "/me/storage"):                        E("/me/storage", 404, 404, 404, 401,
                                                        why="each caller's own: nobody here connected one"),
    # -- secrets: each caller's own, by name; nobody reaches the owner's (admins neither), values never listed
    ("GET", "/secrets"):                              E("/secrets", 200, 200, 200, 401),
    ("POST", "/secrets"):                             E("/secrets", 201, 201, 201, 401, body="new_secret",
                                                        why="each caller stores a new secret of their own"),
    ("PUT", "/secrets/{name}"):                       E("/secrets/{secret}", 200, 201, 201, 401, body="secret_value",
                                                        why="the caller's own secret of that name: the owner replaces "
                                                            "theirs, the others make their own (checked below)"),
    ("DELETE", "/secrets/{name}"):                    E("/secrets/{fresh_secret}", 200, 404, 404, 401),
    # -- datasets: each caller's own storage; an import is a deployment (the routes above)
    ("GET", "/datasets"):                             E("/datasets", 200, 200, 200, 401),
    ("POST", "/datasets"):                            E("/datasets", 201, 201, 201, 401, body="dataset",
                                                        why="each caller imports into their own storage"),
    # -- catalog: browsing is public; a private publication is its owner's (and admins')
    ("GET", "/catalog/{kind}"):                       E(("/catalog/modules", "/catalog/tools"), 200, 200, 200, 200),
    ("POST", "/catalog/{kind}"):                      E("/catalog/modules", 201, 201, 201, 401, body="publish",
                                                        why="each caller publishes a new item of their own"),
    ("GET", "/catalog/{kind}/{item_id}"):             E("/catalog/modules/{published}", 200, 404, 200, 404),
    ("GET", "/catalog/{kind}/{item_id}/config"):      E("/catalog/modules/{published}/config", 200, 404, 200, 404),
    ("DELETE", "/catalog/{kind}/{item_id}"):          E("/catalog/modules/{fresh_published}", 200, 404, 200, 401),
    ("POST", "/catalog/{kind}/{item_id}/promote"):    E("/catalog/modules/{fresh_published}/promote", 403, 403, 200, 401),
    ("GET", "/catalog/modules/{item_id}/package"):    E("/catalog/modules/{published}/package", 200, 404, 200, 401),
    ("GET", "/catalog/modules/{item_id}/train-args"): E("/catalog/modules/ai4lab-diabetes/train-args", 200, 200, 200, 401,
                                                        why="a public module: any user may read it"),
    ("POST", "/catalog/modules/{item_id}/try"):       E("/catalog/modules/ai4lab-diabetes/try", 200, 200, 200, 401,
                                                        body="rows_form", why="a public module: any user may try it"),
    ("GET", "/catalog/errors"):                       E("/catalog/errors", 403, 403, 200, 401),
    ("GET", "/catalog/checks"):                       E("/catalog/checks", 403, 403, 200, 401),
    ("GET", "/catalog/sources"):                      E("/catalog/sources", 403, 403, 200, 401),
    ("POST", "/catalog/sources"):                     E("/catalog/sources", 403, 403, 400, 401, body="source",
                                                        why="admins only; the URL is no repository: git's reason, 400"),
    ("DELETE", "/catalog/sources/{name}"):            E("/catalog/sources/bundled", 403, 403, 400, 401,
                                                        why="admins only; a source of the settings file stays"),
    ("POST", "/catalog/{kind}/{item_id}/check"):      E("/catalog/modules/ai4lab-diabetes/check", 403, 403, 200, 401,
                                                        why="runs the module's code: admins only"),
    ("POST", "/catalog/refresh"):                     E("/catalog/refresh", 403, 403, 200, 401),
}
# fmt: on


@dataclass
class Resources:
    """The callers and the owner's real resources the matrix's placeholders name."""

    platform: Platform
    clients: dict[Caller, httpx.Client]
    stem: str = "authz"
    ids: dict[str, str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def owner(self) -> httpx.Client:
        return self.clients["owner"]

    def unique(self, stem: str) -> str:
        """A name no other resource of this platform has (ids are global, e.g. catalog ids)."""
        return f"{self.stem}-{stem}-{next(self.counter)}"

    def pipeline(self) -> str:
        r = self.owner.post(f"{API}/deployments", **BODIES["pipeline"](self))
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def publication(self) -> str:
        """A private publication of the owner, with a package (for the package download)."""
        body = BODIES["publish"](self)["json"] | {"package_path": "code/authzmod"}
        r = self.owner.post(f"{API}/catalog/modules", json=body)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def stored_file(self) -> str:
        path = f"authz/{self.unique('delete-me')}.txt"
        assert self.owner.put(f"{API}/storage/{path}", content=b"to be deleted").status_code == 200
        return path

    def secret_name(self) -> str:
        """A name no secret of this run has (a secret's name is an environment variable's)."""
        return self.unique("secret").upper().replace("-", "_")

    def secret(self) -> str:
        name = self.secret_name()
        r = self.owner.post(f"{API}/secrets", json={"name": name, "value": "the owner's value"})
        assert r.status_code == 201, r.text
        return name

    def fill(self, path: str) -> str:
        """The path with real ids; each ``{fresh_*}`` placeholder makes a new resource of the owner."""
        fresh: dict[str, Callable[[], str]] = {
            "fresh_pipeline": self.pipeline, "fresh_published": self.publication, "fresh_file": self.stored_file,
            "fresh_secret": self.secret}
        values = {name: make() for name, make in fresh.items() if "{" + name + "}" in path}
        return path.format(**self.ids, **values)


#: Request builders: httpx keyword arguments with a body each route accepts.
BODIES: dict[str, Callable[[Resources], dict[str, Any]]] = {
    "pipeline": lambda res: {"json": {"kind": "pipeline", "title": "authz", "steps": [
        {"deployment": res.ids["module"], "input_field": "file"},
        {"deployment": res.ids["module"], "input_field": "rows"}]}},
    "publish": lambda res: {"json": {"id": res.unique("pub"), "metadata": METADATA}},
    "rows_json": lambda res: {"json": {"rows": ROWS}},
    "rows_form": lambda res: {"files": {"rows": (None, ROWS)}},
    "cvat_export": lambda res: {"json": {"task_id": 1}},
    "raw": lambda res: {"content": b"written by the authorization matrix"},
    "source": lambda res: {"json": {"name": res.unique("src"), "git": "file:///nonexistent/authz-repo"}},
    "upload": lambda res: {"files": {"files": ("note.txt", b"uploaded by the matrix", "text/plain")}},
    "new_secret": lambda res: {"json": {"name": res.secret_name(), "value": "written by the matrix"}},
    "secret_value": lambda res: {"json": {"value": "written by the matrix"}},
    "move": lambda res: {"json": {"to": f"authz/moved/{res.unique('mv')}.txt"}},
    "own_storage": lambda res: {"json": {"type": "webdav", "url": "https://127.0.0.1:9/nothing", "username": "u",
                                         "password": "p"}},
    "dataset": lambda res: {"json": {"source": f"10.5281/zenodo.{AUTHZ_RECORD}", "name": res.unique("ds")}},
}
#: The fake Zenodo's record the matrix imports (tests/fakes/zenodo.py).
AUTHZ_RECORD = 7100


def diabetes_csv(n: int = 40) -> bytes:
    """A small training set in the diabetes module's format (10 features and ``target``)."""
    lines = [",".join(FEATURES + ["target"])]
    for i in range(n):
        row = [20 + i, 1 + i % 2, 20 + i % 15, 80 + i % 30, 150 + i, 90 + i % 20, 40 + i % 10, 3 + i % 4,
               4.0 + (i % 9) / 10, 80 + i % 25]
        lines.append(",".join(map(str, row + [100 + 3 * i + row[2]])))
    return ("\n".join(lines) + "\n").encode()


def start_resources(platform: Platform, stem: str) -> Resources:
    """Users ``<stem>-owner``, ``<stem>-other`` (intermediate) and ``<stem>-admin`` (advanced, admin), and
    the owner's resources, started together and waited for together (also for tests/integration/test_schemathesis.py)."""
    owner = platform.new_user_api(f"{stem}-owner", "intermediate")
    other = platform.new_user_api(f"{stem}-other", "intermediate")
    platform.add_user(f"{stem}-admin", f"{stem}-admin-password", role="advanced", admin=True)
    platform.login(f"{stem}-admin", f"{stem}-admin-password").close()  # the hub takes the admin flag at login
    admin = platform.api(platform.token(f"{stem}-admin"))
    anonymous = httpx.Client(base_url=platform.url, timeout=60)
    res = Resources(platform, {"owner": owner, "other": other, "admin": admin, "anonymous": anonymous}, stem)

    assert owner.put(f"{API}/storage/authz/hello.txt", content=b"the owner's file").status_code == 200
    assert owner.put(f"{API}/storage/datasets/authz.csv", content=diabetes_csv()).status_code == 200
    assert owner.put(f"{API}/storage/code/authzmod/pyproject.toml", content=(
        b'[project]\nname = "authzmod"\nversion = "0.1"\n'
        b'[project.entry-points."deepaas.v2.model"]\nauthzmod = "authzmod.api"\n')).status_code == 200
    res.ids["file"] = "authz/hello.txt"

    started = {
        "module": {"kind": "module", "item": "ai4lab-diabetes", "title": stem, "hardware": {"cpu_num": 1}},
        "training": {"kind": "training", "item": "ai4lab-diabetes", "dataset": "datasets/authz.csv", "args": {}},
        "flower": {"kind": "tool", "item": "ai4lab-flower", "title": stem},
    }
    for name, body in started.items():
        r = owner.post(f"{API}/deployments", json=body)
        assert r.status_code == 201, f"{name}: {r.text}"
        res.ids[name] = r.json()["id"]
    wait_running(owner, res.ids["module"], "running")
    ended = wait_ended(owner, res.ids["training"], ("succeeded", "failed"))
    assert ended["status"] == "succeeded", ended["status_reason"]
    wait_until(lambda: owner.get(f"{API}/deployments/{res.ids['flower']}").json()["status"] == "running", 300,
               "the Flower server did not start")
    res.ids["pipeline"] = res.pipeline()
    res.ids["published"] = res.publication()
    res.ids["secret"] = res.secret()
    return res


def stop_resources(res: Resources) -> None:
    for dep in ("module", "flower", "pipeline"):
        res.owner.delete(f"{API}/deployments/{res.ids[dep]}")
    for client in res.clients.values():
        client.close()


@pytest.fixture(scope="module")
def res(platform: Platform, fake_zenodo: Any) -> Iterator[Resources]:
    from tests.fakes.zenodo import Record

    fake_zenodo.fake.add(Record(id=AUTHZ_RECORD, title="authz", files={"a.txt": b"imported by the matrix"}))
    res = start_resources(platform, "authz")
    yield res
    stop_resources(res)


def test_every_route_has_an_entry_and_every_entry_a_route(platform: Platform) -> None:
    """The schema and the matrix list the same routes: a new route needs someone to decide who may call it."""
    schema = httpx.get(f"{platform.url}{API}/openapi.json", timeout=30).json()
    routes = {(method.upper(), path.removeprefix(API)) for path, ops in schema["paths"].items() for method in ops}
    problems = [f"new route without an authorization entry: {m} {API}{p}" for m, p in sorted(routes - set(MATRIX))]
    problems += [f"authorization entry for a route that no longer exists: {m} {API}{p}"
                 for m, p in sorted(set(MATRIX) - routes)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("route", list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_route(res: Resources, route: tuple[str, str]) -> None:
    method, _ = route
    entry = MATRIX[route]
    wrong = []
    for path in entry.paths():
        for caller in CALLERS:
            url = f"{API}{res.fill(path)}"
            kwargs = BODIES[entry.body](res) if entry.body else {}
            r = res.clients[caller].request(method, url, **kwargs)
            expected = getattr(entry, caller)
            if r.status_code != expected:
                wrong.append(f"{caller}: {method} {url} -> {r.status_code}, expected {expected}: {r.text[:300]}")
    assert not wrong, "\n".join(wrong + ([f"({entry.why})"] if entry.why else []))


def test_the_owners_things_are_unchanged_by_the_others(res: Resources) -> None:
    """What the others' writes to the same paths did: their own storage, not the owner's."""
    owner = res.owner
    assert owner.get(f"{API}/storage/authz/hello.txt").content == b"the owner's file"
    for caller in ("other", "admin"):
        listing = res.clients[caller].get(f"{API}/storage/authz").json()["content"]
        assert "hello.txt" not in {e["name"] for e in listing}, caller
    for dep in ("module", "flower"):
        assert owner.get(f"{API}/deployments/{res.ids[dep]}").json()["status"] == "running", dep
    # the others' PUT and DELETE of the owner's secret's name reached secrets of their own
    assert res.ids["secret"] in {s["name"] for s in owner.get(f"{API}/secrets").json()}
    for caller in ("other", "admin"):
        assert res.ids["secret"] in {s["name"] for s in res.clients[caller].get(f"{API}/secrets").json()}, caller
    assert owner.get(f"{API}/catalog/modules/{res.ids['published']}").json()["visibility"] == "private"
