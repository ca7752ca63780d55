"""A scientist in JupyterLab: the ai4lab panels, driven in headless Chromium against the real platform.

One JupyterLab session for the whole file: open each panel from the ai4lab sidebar, search the
marketplace, pick a dataset in Storage, train the bundled digits classifier until it succeeds
(live log, metric plot), deploy the trained model and get a prediction in the try-it box, see
API errors as sentences, start a Flower server. Every panel is photographed into the test's tmp
dir; with AI4LAB_SCREENSHOTS=docs/screenshots the README's pictures are refreshed too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_browser import browser, login, shot  # noqa: F401 - the Chromium fixture
from tests.integration.test_module_deployments import held_out  # noqa: F401 - the digit PNGs fixture
from tests.integration.test_trainings import upload_digit_dataset
from tests.platform_harness import Platform
from tests.storage_servers import DavServer, dav_server  # noqa: F401 - the WebDAV server fixture

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform-browser")]
USER, PASSWORD = "lara", "lara-password"
API = "/services/ai4lab"
LONG = 300_000  # ms: trainings and module environments may take a while on 2 busy cores


class Lab:
    """The logged-in page with JupyterLab open, and where its screenshots go."""

    def __init__(self, page: Any, shots: Path, api: httpx.Client) -> None:
        self.page, self.shots, self.api = page, shots, api

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"))
        shot(self.page, name)

    def open_panel(self, name: str) -> Any:
        """Open a panel the way a person does: the ai4lab tab of the left sidebar, then its button."""
        page = self.page
        if not page.locator("#ai4lab-sidebar").is_visible():
            page.click("li.lm-TabBar-tab[data-id='ai4lab-sidebar']")
        page.click(f"#ai4lab-sidebar button[data-panel={name}]")
        panel = page.locator(f"#ai4lab-{name}")
        panel.wait_for(state="visible")
        return panel


@pytest.fixture(scope="module")
def lab(browser: Any, platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:  # noqa: F811
    platform.add_user(USER, PASSWORD, role="intermediate")
    token = platform.token(USER)
    api = platform.api(token)
    upload_digit_dataset(api, tmp_path_factory.mktemp("lab-digits"), n=200)
    r = api.post(f"/hub/api/users/{USER}/server", json={"profile": "small", "ide": "lab", "cpu": 1, "ram_gb": 2, "gpu": 0})
    assert r.status_code in (201, 202), r.text
    platform.wait_server(token, USER)
    page = login(browser, platform, USER, PASSWORD)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{platform.url}/user/{USER}/lab")
    page.wait_for_selector("li.lm-TabBar-tab[data-id='ai4lab-sidebar']", timeout=120_000)
    yield Lab(page, tmp_path_factory.mktemp("lab-screenshots"), api)
    for dep in api.get(f"{API}/deployments").json():
        if dep["status"] in ("queued", "starting", "running") and dep["kind"] != "ide":
            api.delete(f"{API}/deployments/{dep['id']}")
    api.delete(f"/hub/api/users/{USER}/server")


def test_launcher_and_sidebar_offer_every_panel(lab: Lab) -> None:
    page = lab.page
    page.wait_for_selector(".jp-Launcher-section:has-text('ai4lab')", timeout=60_000)
    cards = page.locator(".jp-Launcher-section:has-text('ai4lab') .jp-LauncherCard").all_inner_texts()
    assert [c.strip() for c in cards] == ["Marketplace", "Deployments & trainings", "Deploy & try", "Federated (Flower)",
                                          "Storage", "Secrets"]
    page.click("li.lm-TabBar-tab[data-id='ai4lab-sidebar']")
    assert page.locator("#ai4lab-sidebar button.ai4lab-open").count() == 6
    lab.shot("lab-launcher")


def test_marketplace_search_and_detail(lab: Lab) -> None:
    page = lab.page
    panel = lab.open_panel("marketplace")
    panel.locator("article.ai4lab-card[data-id=ai4lab-digits]").wait_for()
    assert panel.locator("#ai4lab-mp-task option").count() > 1  # filters come from the catalog's facets
    lab.shot("lab-marketplace")
    panel.locator("#ai4lab-mp-q").fill("digit")
    panel.locator("#ai4lab-mp-q").press("Enter")
    page.wait_for_function("document.querySelector('#ai4lab-marketplace .ai4lab-mp-count').textContent.includes('digit')")
    assert panel.locator("article.ai4lab-card").first.get_attribute("data-id") == "ai4lab-digits"
    panel.locator("#ai4lab-mp-gpu").select_option("true")
    panel.locator("#ai4lab-mp-search").click()
    page.wait_for_function("document.querySelector('#ai4lab-marketplace .ai4lab-mp-count').textContent.startsWith('0 ')")
    panel.locator("#ai4lab-mp-gpu").select_option("")
    panel.locator("#ai4lab-mp-search").click()
    panel.locator("article.ai4lab-card[data-id=ai4lab-digits]").click()
    detail = panel.locator(".ai4lab-detail")
    detail.locator("h2", has_text="digit").wait_for()
    assert not panel.locator(".ai4lab-cards").is_visible()
    assert detail.locator(".ai4lab-description strong", has_text="Inference").count() == 1  # rendered Markdown
    actions = detail.locator(".ai4lab-actions button").all_inner_texts()
    assert actions == ["Try", "Deploy", "Train", "Open in IDE"]
    lab.shot("lab-marketplace-detail")
    detail.locator("button[data-action=ide]").click()
    detail.locator(".ai4lab-note", has_text="Copied into your workspace: ai4lab-digits/").wait_for(timeout=60_000)
    ws = lab.api.get(f"/user/{USER}/api/contents/ai4lab-digits").json()
    assert {"pyproject.toml", "ai4-metadata.yml", "ai4lab_digits"} <= {c["name"] for c in ws["content"]}
    detail.locator("button[data-action=ide]").click()  # a second time: refused with the reason
    detail.locator(".ai4lab-error", has_text="already exists in your workspace").wait_for()


def test_storage_upload_download_delete(lab: Lab, tmp_path: Path) -> None:
    page = lab.page
    panel = lab.open_panel("storage")
    panel.locator("#ai4lab-storage-folder").fill("notes")
    panel.locator("button", has_text="New folder").click()
    panel.locator("li[data-path=notes] a.ai4lab-dir").click()
    panel.locator("#ai4lab-storage-path", has_text="notes").wait_for()
    src = tmp_path / "hello.csv"
    src.write_bytes(b"a,b\n1,2\n")
    panel.locator("#ai4lab-storage-upload").set_input_files(str(src))
    panel.locator("#ai4lab-storage-upload-button").click()
    panel.locator("li[data-path='notes/hello.csv']").wait_for()
    assert lab.api.get(f"{API}/storage/notes/hello.csv").content == b"a,b\n1,2\n"
    with page.expect_download() as download:
        panel.locator("li[data-path='notes/hello.csv'] a.ai4lab-file").click()
    assert Path(download.value.path()).read_bytes() == b"a,b\n1,2\n" and download.value.suggested_filename == "hello.csv"
    page.once("dialog", lambda d: d.accept())
    panel.locator("li[data-path='notes/hello.csv'] button[data-action=delete]").click()
    panel.locator("li.ai4lab-note", has_text="empty folder").wait_for()
    assert lab.api.get(f"{API}/storage/notes").json()["content"] == []
    panel.locator("#ai4lab-storage-path a", has_text="storage").click()
    panel.locator("li[data-path=datasets]").wait_for()


def test_storage_panel_shows_the_quota_and_connects_my_own_storage(lab: Lab, dav_server: DavServer) -> None:  # noqa: F811
    panel = lab.open_panel("storage")
    panel.locator("#ai4lab-storage-usage", has_text=re.compile(r"Used .* of .* GB")).wait_for()
    panel.locator("#ai4lab-storage-where", has_text="The platform's storage.").wait_for()
    folder = dav_server.new_folder()
    (dav_server.root / folder / "on-my-nextcloud.txt").write_text("hello")
    panel.locator("#ai4lab-own-storage summary").click()
    panel.locator("#ai4lab-own-type").select_option("webdav")
    panel.locator("#ai4lab-own-url").fill("nextcloud.example.org")
    panel.locator("#ai4lab-own-connect").click()
    panel.locator(".ai4lab-errors", has_text="URL: a WebDAV storage is https://HOST/PATH").wait_for()
    panel.locator("#ai4lab-own-url").fill(f"{dav_server.url}/{folder}")
    panel.locator("#ai4lab-own-username").fill("dav-user")
    panel.locator("#ai4lab-own-password").fill("dav-password")
    panel.locator("#ai4lab-own-connect").click()
    panel.locator("#ai4lab-storage-where", has_text="My own webdav storage").wait_for()
    panel.locator("li[data-path='on-my-nextcloud.txt']").wait_for()
    assert panel.locator("#ai4lab-own-password").input_value() == ""  # the password is not kept in the page
    panel.locator("#ai4lab-storage-usage", has_text="My own storage").wait_for()
    lab.shot("lab-storage-own")
    panel.locator("#ai4lab-own-disconnect").click()
    panel.locator("#ai4lab-storage-where", has_text="The platform's storage.").wait_for()
    assert lab.api.get(f"{API}/me/storage").json()["source"] == "platform"


def test_secrets_panel_adds_lists_and_deletes_without_showing_values(lab: Lab) -> None:
    import secrets

    page = lab.page
    panel = lab.open_panel("secrets")
    panel.locator("li.ai4lab-note", has_text="no secrets yet").wait_for()
    value = f"lab-{secrets.token_urlsafe(18)}"
    panel.locator("#ai4lab-secret-name").fill("LAB_TOKEN")
    panel.locator("#ai4lab-secret-value").fill(value)
    panel.locator("#ai4lab-secret-save").click()
    panel.locator("li[data-secret=LAB_TOKEN]").wait_for()
    assert panel.locator("#ai4lab-secret-value").input_value() == ""  # write-only: cleared once sent
    assert value not in page.content()
    assert [s["name"] for s in lab.api.get(f"{API}/secrets").json()] == ["LAB_TOKEN"]
    # a bad name is explained before anything is sent; a reserved one by the platform, as one sentence
    for name, reason in (("9lives", "not an environment variable name"), ("PATH", "the platform sets itself")):
        panel.locator("#ai4lab-secret-name").fill(name)
        panel.locator("#ai4lab-secret-value").fill("x")
        panel.locator("#ai4lab-secret-save").click()
        panel.locator(".ai4lab-error", has_text=reason).wait_for()
    assert [s["name"] for s in lab.api.get(f"{API}/secrets").json()] == ["LAB_TOKEN"]
    lab.shot("lab-secrets")
    page.once("dialog", lambda d: d.accept())
    panel.locator("li[data-secret=LAB_TOKEN] button[data-action=delete]").click()
    panel.locator("li.ai4lab-note", has_text="no secrets yet").wait_for()
    assert lab.api.get(f"{API}/secrets").json() == []


def test_train_from_storage_then_deploy_and_try(lab: Lab, held_out: list[tuple[Path, int]], tmp_path: Path) -> None:  # noqa: F811
    """One story, in order: pick a dataset in Storage, train to succeeded, deploy the result, predict."""
    page = lab.page
    panel = lab.open_panel("storage")
    panel.locator("li[data-path=datasets] a.ai4lab-dir").click()
    panel.locator("li[data-path='datasets/digits'] a.ai4lab-dir").wait_for()
    lab.shot("lab-storage")
    panel.locator("li[data-path='datasets/digits'] button[data-action=use]").click()
    deploy = page.locator("#ai4lab-deploy")
    deploy.locator("#ai4lab-deploy-submit", has_text="Start training").wait_for(timeout=120_000)
    assert deploy.locator("#ai4lab-train-dataset").input_value() == "datasets/digits"
    # the dataset picker offers the user's datasets (GET /datasets) as the field's suggestions
    deploy.locator("#ai4lab-train-datasets option[value='datasets/digits']").wait_for(state="attached")
    deploy.locator("#ai4lab-deploy-item").fill("ai4lab-digits")
    deploy.locator("#ai4lab-arg-epochs").fill("0")  # checked before anything is sent
    deploy.locator("#ai4lab-deploy-submit").click()
    deploy.locator(".ai4lab-error", has_text="epochs: must be between 1 and 1000").wait_for()
    deploy.locator("#ai4lab-arg-epochs").fill("15")
    deploy.locator("#ai4lab-deploy-submit").click()
    panel = page.locator("#ai4lab-deployments")
    panel.wait_for(state="visible")
    row = panel.locator("tr.ai4lab-selected")
    row.wait_for()
    training = row.get_attribute("data-id")
    assert training and row.locator("td").first.inner_text() == "training"
    row.locator(".ai4lab-badge[data-status=succeeded]").wait_for(timeout=LONG)
    panel.locator("#ai4lab-dep-chart circle[data-series=final_val_accuracy]").wait_for(timeout=60_000)  # the last metric
    assert panel.locator("#ai4lab-dep-chart path[data-series=val_accuracy]").count() == 1
    assert panel.locator("#ai4lab-dep-chart svg").count() >= 2  # one chart per metric
    panel.locator("#ai4lab-dep-logs", has_text="— succeeded —").wait_for(timeout=60_000)  # the live stream's end
    assert panel.locator("#ai4lab-dep-mlflow").get_attribute("href").endswith(lab.api.get(
        f"{API}/deployments/{training}").json()["endpoints"]["mlflow_run_id"])
    lab.shot("lab-trainings")
    assert lab.api.get(f"{API}/deployments/{training}").json()["status"] == "succeeded"

    # deploy the model it made, from the Deployments panel, and predict in the try-it box
    panel.locator("#ai4lab-dep-deploy").click()
    deploy = page.locator("#ai4lab-deploy")
    deploy.wait_for(state="visible")
    deploy.locator("#ai4lab-deploy-status .ai4lab-badge[data-status=running]").wait_for(timeout=LONG)
    dep_id = re.search(r"Deployment (\S+)", deploy.locator("#ai4lab-deploy-status").inner_text()).group(1)
    page.wait_for_function(f"document.querySelector('#ai4lab-try-target').value == '{dep_id}'", timeout=60_000)
    assert lab.api.get(f"{API}/deployments/{dep_id}").json()["spec"]["weights"]
    hits = 0
    for path, label in held_out[:3]:
        deploy.locator("#ai4lab-try-image").set_input_files(str(path))
        deploy.locator("#ai4lab-try-button").click()
        deploy.locator("#ai4lab-try-label").wait_for(timeout=120_000)
        text = deploy.locator("#ai4lab-try-label").inner_text()
        assert re.fullmatch(r"Predicted label: \d", text), text
        hits += text == f"Predicted label: {label}"
        assert "probabilities" in deploy.locator("#ai4lab-try-json").inner_text()
    assert hits >= 2
    lab.shot("lab-deploy-try")
    # a file that is not an image: the module's reason, as a sentence
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not an image")
    deploy.locator("#ai4lab-try-image").set_input_files(str(notes))
    deploy.locator("#ai4lab-try-button").click()
    error = deploy.locator("#ai4lab-try .ai4lab-error")
    error.wait_for(timeout=120_000)
    assert "image" in error.inner_text().lower() and "Traceback" not in error.inner_text()


def test_try_answers_as_an_image(lab: Lab, held_out: list[tuple[Path, int]]) -> None:  # noqa: F811
    """A module with an ``accept`` argument: "Answer as" image/png shows the PNG it sends, with a download link."""
    deploy = lab.open_panel("deploy")
    deploy.locator("#ai4lab-deploy-item").fill("ai4lab-image-prep")
    deploy.locator("#ai4lab-deploy-load").click()
    deploy.locator("#ai4lab-try-accept").wait_for(timeout=LONG)  # the module's accept choices
    assert deploy.locator("#ai4lab-try-size").get_attribute("type") == "number"  # an Int with a range
    deploy.locator("#ai4lab-try-size").fill("99")
    deploy.locator("#ai4lab-try-image").set_input_files(str(held_out[0][0]))
    deploy.locator("#ai4lab-try-button").click()
    deploy.locator("#ai4lab-try .ai4lab-error", has_text="size: must be between 4 and 64").wait_for()
    deploy.locator("#ai4lab-try-size").fill("16")
    deploy.locator("#ai4lab-try-accept").select_option("image/png")
    deploy.locator("#ai4lab-try-button").click()
    image = deploy.locator("#ai4lab-try-answer-image")
    image.wait_for(timeout=LONG)
    lab.page.wait_for_function("document.querySelector('#ai4lab-try-answer-image').naturalWidth == 16", timeout=60_000)
    assert deploy.locator("#ai4lab-try-download").get_attribute("download") == "answer.png"
    assert "image/png" in deploy.locator("#ai4lab-try-result").inner_text()


def test_api_errors_are_sentences_in_the_panel(lab: Lab) -> None:
    deploy = lab.open_panel("deploy")
    deploy.locator("#ai4lab-deploy-item").fill("no-such-module")
    deploy.locator("#ai4lab-deploy-load").click()
    error = deploy.locator("#ai4lab-deploy-errors .ai4lab-error")
    error.wait_for()
    assert error.inner_text() == "no module 'no-such-module' in the catalog"


def test_flower_server_from_the_panel(lab: Lab, platform: Platform, tmp_path: Path) -> None:
    # the Flower tool is bundled (config/catalog/tools/ai4lab-flower): its absence is a broken platform, not a skip
    with platform.api(platform.token(USER)) as api:
        r = api.get(f"{API}/catalog/tools/ai4lab-flower")
    assert r.status_code == 200, (f"the bundled Flower tool ai4lab-flower is not in the platform's catalog "
                                  f"(HTTP {r.status_code}: {r.text[:300]}); check config/catalog/tools/ai4lab-flower "
                                  "and the bundled catalog source")
    from ai4lab.flower.client import join  # the Flower tool's own client
    from tests.flower.data import digit_splits

    panel = lab.open_panel("flower")
    panel.locator("#ai4lab-fl-strategy").select_option("FedProx")
    assert panel.locator("#ai4lab-fl-mu").is_visible() and not panel.locator("#ai4lab-fl-lr").is_visible()
    panel.locator("#ai4lab-fl-min-fit").fill("1")
    panel.locator("#ai4lab-fl-start").click()
    panel.locator(".ai4lab-errors .ai4lab-error", has_text="Minimum clients per round: must be between 2 and 1000").wait_for()
    panel.locator("#ai4lab-fl-min-fit").fill("2")
    panel.locator("#ai4lab-fl-rounds").fill("2")
    panel.locator("#ai4lab-fl-start").click()
    panel.locator("#ai4lab-fl-address").wait_for(timeout=LONG)
    address = panel.locator("#ai4lab-fl-address").inner_text()
    assert re.fullmatch(r"[\w.\-\[\]:]+:\d+", address)
    panel.locator("#ai4lab-fl-snippet").filter(has_text=address).wait_for(timeout=60_000)
    dep_id = panel.locator("#ai4lab-fl-servers").input_value()
    token = lab.api.get(f"{API}/deployments/{dep_id}/flower/token").json()
    assert token["token"] in panel.locator("#ai4lab-fl-snippet").inner_text()
    assert panel.locator("#ai4lab-fl-cert").text_content().startswith("-----BEGIN CERTIFICATE-----")  # folded away
    # two real clients join with what the panel shows; the panel follows their rounds
    clients = [join(address, token["token"], "ai4lab-digits", str(split), root_certificates=token["certificate"],
                    log=tmp_path / f"client{i}.log") for i, split in enumerate(digit_splits(tmp_path / "data"))]
    try:
        panel.locator("#ai4lab-fl-round-list li[data-round='2']").wait_for(timeout=LONG)
        panel.locator("#ai4lab-fl-chart path[data-series=accuracy]").wait_for()
        assert re.fullmatch(r"Round 1: accuracy 0\.\d{3}, loss \d+\.\d{3}, 2 clients",
                            panel.locator("#ai4lab-fl-round-list li[data-round='1']").inner_text())
        panel.locator(".ai4lab-dep-head .ai4lab-badge[data-status=succeeded]").wait_for(timeout=120_000)
        assert "2 of 2 round(s) done" in panel.locator("#ai4lab-fl-state").inner_text()
        assert panel.locator(f"#ai4lab-fl-servers option[value='{dep_id}']").inner_text().endswith("succeeded")
        panel.locator("#ai4lab-fl-round-list").scroll_into_view_if_needed()
        lab.shot("lab-flower")
    finally:
        for proc in clients:
            proc.kill()
            proc.wait()


def test_module_package_for_open_in_ide(platform: Platform) -> None:
    """The platform side of *Open in IDE*: a module's package as .tar.gz, without caches; reasons otherwise."""
    import io
    import tarfile

    api = platform.api(platform.token(USER)) if USER in platform.cli("users", "list").stdout else None
    if api is None:
        platform.add_user(USER, PASSWORD, role="intermediate")
        api = platform.api(platform.token(USER))
    r = api.get(f"{API}/catalog/modules/ai4lab-digits/package")
    assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
    names = tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz").getnames()
    assert "pyproject.toml" in names and "ai4lab_digits/api.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    r = api.get(f"{API}/catalog/modules/ai4os-demo-app/package")
    assert r.status_code == 400 and r.json()["detail"].startswith("ai4os-demo-app has no package on this platform")
    assert api.get(f"{API}/catalog/modules/no-such-thing/package").status_code == 404
    assert httpx.get(f"{platform.url}{API}/catalog/modules/ai4lab-digits/package").status_code == 401
