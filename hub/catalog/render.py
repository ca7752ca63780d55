"""Item descriptions: Markdown with some raw HTML (AI4OS uses <img>, <video>), rendered and sanitised."""

from __future__ import annotations

import re

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


_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)


def _tidy_img(tag: re.Match[str]) -> str:
    # AI4OS descriptions write <img class='fit', src='...'/>: a comma that CommonMark refuses
    return re.sub(r"""(['"])\s*,""", r"\1", tag.group(0))


def description_html(markdown: str) -> str:
    return nh3.clean(_md.render(_IMG.sub(_tidy_img, markdown or "")), tags=_TAGS, attributes=_ATTRS)
