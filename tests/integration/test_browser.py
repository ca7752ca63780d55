"""A person in a browser: log in, see the form, start JupyterLab, find storage/; admins get the admin panel.

Headless Debian Chromium driven by Playwright. With AI4LAB_SCREENSHOTS=<dir>
the pages are also saved as PNG (the README's pictures come from here).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform")]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run scripts/install.sh test")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def shot(page: object, name: str) -> None:
    folder = os.environ.get("AI4LAB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))  # type: ignore[attr-defined]


def login(browser: object, platform: Platform, user: str, password: str) -> object:
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{platform.url}/hub/login")
    shot(page, "login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login_submit, input[type=submit], button[type=submit]")
    page.wait_for_load_state("networkidle")
    return page


def test_user_gets_jupyterlab_with_storage(browser: object, platform: Platform) -> None:
    platform.add_user("frank", "frank-password", role="intermediate")
    page = login(browser, platform, "frank", "frank-password")
    page.goto(f"{platform.url}/hub/spawn")
    page.wait_for_selector("text=Your role is")
    assert "2 of 2 free: Tesla T4, Tesla T4" in page.content()
    shot(page, "spawn-form")
    page.check("input[value=large]")
    assert page.input_value("#ai4lab-cpu") == "2"
    page.select_option("#ai4lab-ide", "lab")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url("**/user/frank/lab**", timeout=120_000)
    page.wait_for_selector(".jp-DirListing-itemText >> text=storage", timeout=120_000)  # the file browser's entry
    shot(page, "jupyterlab")
    # the MLflow UI and the platform API are reachable in the browser through the hub login
    platform.wait_mlflow(platform.token("frank"))
    # MLflow's UI writes with the login cookie too (runs/search is a POST): it must carry the XSRF token
    calls: list[tuple[str, str, int]] = []
    page.on("response", lambda r: calls.append((r.request.method, r.url, r.status)) if "/ajax-api/" in r.url else None)
    page.goto(f"{platform.url}/services/mlflow/")
    page.wait_for_selector("text=Experiments", timeout=60_000)
    shot(page, "mlflow")
    with page.expect_response(lambda r: "/ajax-api/" in r.url and r.request.method == "POST", timeout=60_000):
        page.goto(f"{platform.url}/services/mlflow/#/experiments/0")
    assert [c for c in calls if c[0] == "POST" and c[2] != 200] == []
    assert [c for c in calls if c[2] in (401, 403)] == []
    page.goto(f"{platform.url}/services/ai4lab/me")
    assert '"role":"intermediate"' in page.inner_text("body").replace(" ", "")
    token = platform.token("frank")
    assert platform.api(token).get("/hub/api/users/frank").json()["servers"][""]["user_options"]["cpu"] == 2.0
    platform.api(token).delete("/hub/api/users/frank/server")


def test_admin_panel_for_admins_only(browser: object, platform: Platform) -> None:
    page = login(browser, platform, "admin", platform.admin_password)
    response = page.goto(f"{platform.url}/hub/admin")
    assert response.status == 200
    page.wait_for_selector("text=admin", timeout=30_000)
    shot(page, "admin")
    platform.add_user("grace", "grace-password")
    page = login(browser, platform, "grace", "grace-password")
    response = page.goto(f"{platform.url}/hub/admin")
    assert response.status == 403


def test_platform_admin_view(browser: object, platform: Platform) -> None:
    """All users' deployments, usage per user and VO, quotas, catalog errors; admins only."""
    platform.add_user("hal", "hal-password", role="intermediate")
    hal = platform.api(platform.token("hal"))
    dep = hal.post("/services/ai4lab/deployments", json={"kind": "ide", "name": "adm", "options": {"cpu": 1, "ram_gb": 1}})
    assert dep.status_code == 201, dep.text
    usage = platform.api(platform.token("admin")).get("/services/ai4lab/admin/usage").json()
    assert usage["per_user"]["hal"]["active"] >= 1 and usage["per_user"]["hal"]["cpu"] >= 1
    assert "basic" in usage["quotas"] and any(e["source"] == "broken" for e in usage["catalog_errors"])
    assert hal.get("/services/ai4lab/admin/usage").status_code == 403
    page = login(browser, platform, "admin", platform.admin_password)
    page.goto(f"{platform.url}/hub/home")
    page.click("#platform-admin")
    page.wait_for_selector("#deployments")
    row = page.locator(f"tr[data-id='{dep.json()['id']}']")
    assert "hal" in row.inner_text()
    assert "broken/*" in page.inner_text("#catalog-errors")
    shot(page, "platform-admin")
    row.locator("button.stop").click()
    page.wait_for_function(f"document.querySelector(\"tr[data-id='{dep.json()['id']}'] .status\").textContent == 'stopped'")
    assert hal.get(f"/services/ai4lab/deployments/{dep.json()['id']}").json()["status"] == "stopped"
    hal_page = login(browser, platform, "hal", "hal-password")
    assert hal_page.goto(f"{platform.url}/services/ai4lab/admin").status == 403
