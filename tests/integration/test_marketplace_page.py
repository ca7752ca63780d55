"""A basic user in a browser: from the hub home page to the marketplace, search, try a module, deploy it.

No IDE is started. With AI4LAB_SCREENSHOTS=<dir> the pages are saved as marketplace.png and
marketplace-detail.png.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.integration.test_browser import browser, login, shot  # noqa: F401 - the Chromium fixture
from tests.integration.test_module_deployments import held_out  # noqa: F401 - the digit PNGs fixture
from tests.platform_harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("platform-browser")]
MARKET = "/services/ai4lab/marketplace"


@pytest.fixture(scope="module")
def page(browser: object, platform: Platform) -> object:  # noqa: F811
    platform.add_user("mia", "mia-password", role="basic")
    return login(browser, platform, "mia", "mia-password")


def test_pages_need_a_login(platform: Platform) -> None:
    r = httpx.get(f"{platform.url}{MARKET}", headers={"Accept": "text/html"})
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["location"]
    assert httpx.get(f"{platform.url}{MARKET}").status_code == 401


def test_home_link_search_and_try_a_digit(
    page: object, platform: Platform, held_out: list[tuple[Path, int]], tmp_path: Path  # noqa: F811
) -> None:
    page.goto(f"{platform.url}/hub/home")
    page.click("a#marketplace")
    page.wait_for_url(f"**{MARKET}**")
    page.wait_for_selector("article.card")
    assert page.locator("article.card[data-id=ai4lab-digits]").count() == 1
    shot(page, "marketplace")
    page.fill("input[name=q]", "digit")
    page.click("#search-button")
    page.wait_for_url("**q=digit**")
    assert page.locator("article.card").first.get_attribute("data-id") == "ai4lab-digits"
    assert "for “digit”" in page.inner_text("#result-count")
    page.click("article.card[data-id=ai4lab-digits] h3 a")
    page.wait_for_url(f"**{MARKET}/modules/ai4lab-digits")
    assert "Handwritten digit classifier" in page.inner_text(".summary")
    assert page.locator("#description strong", has_text="Inference").count() == 1  # Markdown, rendered
    assert "1 CPU · 1000 MB RAM" in page.inner_text("body")
    assert page.locator("#deploy-form").inner_text().count("RAM memory") == 1
    path, label = held_out[0]
    page.set_input_files("#try-image", str(path))
    page.click("#try-button")
    page.wait_for_selector("#try-label", timeout=120_000)
    assert page.inner_text("#try-label") == f"Predicted label: {label}"
    assert "probabilities" in page.inner_text("#try-json")
    shot(page, "marketplace-detail")
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not an image")
    page.set_input_files("#try-image", str(notes))
    page.click("#try-button")
    page.wait_for_selector("#try-result .error", timeout=120_000)
    error = page.inner_text("#try-result .error")
    assert "image" in error.lower() and "Traceback" not in error and "{" not in error



def test_try_answer_as_an_image(page: object, platform: Platform,
                                held_out: list[tuple[Path, int]]) -> None:  # noqa: F811
    """A module with an ``accept`` argument: its choices as "Answer as", and a PNG answer shown and offered."""
    page.goto(f"{platform.url}{MARKET}/modules/ai4lab-image-prep")
    page.wait_for_selector("#try-accept")
    assert page.get_attribute("#try-size", "type") == "number" and page.get_attribute("#try-size", "max") == "64"
    page.set_input_files("#try-image", str(held_out[0][0]))
    page.fill("#try-size", "12")
    page.select_option("#try-accept", "image/png")
    page.click("#try-button")
    page.wait_for_selector("#try-image-answer", timeout=120_000)
    page.wait_for_function("document.querySelector('#try-image-answer').naturalWidth == 12", timeout=60_000)
    assert page.get_attribute("#try-download", "download") == "answer.png"
    assert "image/png" in page.inner_text("#try-result")


def test_deploy_from_the_page(page: object, platform: Platform) -> None:
    page.goto(f"{platform.url}{MARKET}/modules/ai4lab-digits")
    page.click("#deploy-button")
    page.wait_for_selector("#deploy-ui", timeout=240_000)
    assert "is running" in page.inner_text("#deploy-status")
    ui = page.get_attribute("#deploy-ui", "href")
    assert re.search(r"/services/ai4lab/deployments/[\w-]+/api/ui$", ui)
    dep_id = ui.split("/deployments/")[1].split("/")[0]
    swagger = page.context.request.get(urljoin(platform.url, ui))  # with the login cookie
    assert swagger.status == 200 and "swagger" in swagger.text().lower()
    api = platform.api(platform.token("mia"))
    assert api.delete(f"/services/ai4lab/deployments/{dep_id}").json()["status"] == "stopped"


def test_gpu_filter_and_kinds(page: object, platform: Platform) -> None:
    page.goto(f"{platform.url}{MARKET}")
    page.select_option("#f-gpu", "yes")
    page.click("#apply-filters")
    page.wait_for_url("**gpu=yes**")
    cards = page.locator("article.card")
    assert cards.count() > 0
    assert cards.count() == page.locator("article.card .badge.gpu").count()
    assert page.locator("article.card[data-id=ai4lab-digits]").count() == 0
    page.select_option("#f-kind", "tools")
    page.select_option("#f-gpu", "")
    page.click("#apply-filters")
    page.wait_for_url("**kind=tools**")
    assert "tool" in page.inner_text("#result-count")
    assert page.locator("article.card").count() > 0


def test_ai4os_item_detail_and_missing_item(page: object, platform: Platform) -> None:
    response = page.goto(f"{platform.url}{MARKET}/modules/ai4os-demo-app")
    assert response.status == 200
    description = page.locator("#description")
    assert description.locator("p").count() > 0 and "**" not in description.inner_text()
    assert "no local package" in page.inner_text("#deploy")
    assert page.locator("#try").count() == 0
    assert page.locator("#links a").count() > 0
    response = page.goto(f"{platform.url}{MARKET}/modules/no-such-thing")
    assert response.status == 404 and "Not found" in page.inner_text("h1")
