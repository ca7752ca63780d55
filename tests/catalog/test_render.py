"""Descriptions: Markdown rendered to HTML, sanitised, with the raw <img>/<video> AI4OS uses."""

from __future__ import annotations

import re

import pytest

from ai4lab.catalog.render import description_html
from tests.catalog.helpers import raw


def test_markdown_is_rendered() -> None:
    html = description_html("# Title\n\nSome **bold** and *em*, `code`, [a link](https://example.org).\n\n"
                            "* one\n* two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html and "<em>em</em>" in html and "<code>code</code>" in html
    assert re.search(r'<a href="https://example.org"[^>]*>a link</a>', html)
    assert "<li>one</li>" in html and "<ul>" in html
    assert "<table>" in html and "<td>1</td>" in html


def test_script_and_event_handlers_are_removed() -> None:
    html = description_html(
        "Hello\n\n<script>alert('x')</script>\n\n"
        '<img src="https://example.org/a.png" alt="a" onerror="alert(1)">\n\n'
        '<a href="javascript:alert(1)" onclick="alert(2)">click</a>\n\n'
        '<div onmouseover="alert(3)">x</div>\n'
    )
    assert "<script" not in html and "alert('x')" not in html
    assert "onerror" not in html and "onclick" not in html and "onmouseover" not in html
    assert "javascript:" not in html
    assert '<img src="https://example.org/a.png" alt="a">' in html
    assert "<p>Hello</p>" in html


def test_img_and_video_are_kept() -> None:
    html = description_html('<video src="https://example.org/v.mp4" controls width="400"></video>\n\n'
                            "Text\n\n<img src='https://example.org/b.png' width='300'/>\n")
    assert re.search(r'<video[^>]*src="https://example.org/v.mp4"', html)
    assert re.search(r'<img[^>]*src="https://example.org/b.png"', html)
    assert 'width="300"' in html


def test_empty_description() -> None:
    assert description_html("") == ""
    assert description_html(None) == ""  # type: ignore[arg-type]


def test_real_description_renders() -> None:
    html = description_html(raw("modules/ai4os-demo-app.yml")["description"])
    assert '<a href="https://github.com/ai4os/ai4-template"' in html
    assert "<strong>dummy inference</strong>" in html
    assert "<code>master</code>" in html


def test_real_video_is_kept() -> None:
    html = description_html(raw("modules/thermal-anomaly-segmenter.yml")["description"])
    assert "<video controls" in html and "&lt;video" not in html
    assert re.search(r'<source src="https://github.com/user-attachments/assets/[^"]+" type="video/mp4">', html)


REAL_WITH_IMAGES = [f"modules/{n}.yml" for n in (
    "WITOIL-for-iMagine", "ai4os-fasterrcnn-torch", "ai4os-image-classification-tf", "ai4os-yolo-torch",
    "socib-rip-currents-detection", "thunderstorm-nowcast-microstep")] + [f"tools/{n}.yml" for n in (
    "ai4os-cvat", "ai4os-dev-env", "ai4os-federated-server", "ai4os-llm")] + [
    "variants/phyto-plankton-classification.e6a5445.yml"]


@pytest.mark.parametrize("file", REAL_WITH_IMAGES)
def test_real_ai4os_images_are_rendered_as_images(file: str) -> None:
    description = raw(file)["description"]
    assert "<img class='fit', src=" in description
    html = description_html(description)
    assert "&lt;img" not in html
    assert html.count("<img") == description.count("<img")
    assert re.search(r'<img[^>]*src="https://', html)
