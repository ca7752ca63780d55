"""Item descriptions: Markdown with some raw HTML (AI4OS uses <img>, <video>), rendered and sanitised."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": True}).enable("table")
_TAGS = nh3.ALLOWED_TAGS | {"img", "video", "source", "figure", "figcaption"}
_ATTRS = {
    **nh3.ALLOWED_ATTRIBUTES,
    "img": {"src", "alt", "title", "width", "height"},
    "video": {"src", "controls", "width", "height", "poster"},
    "source": {"src", "type"},
    "a": {"href", "title"},
}


def description_html(markdown: str) -> str:
    return nh3.clean(_md.render(markdown or ""), tags=_TAGS, attributes=_ATTRS)
