"""DEEPaaS v2 API of ai4lab-image-prep (entry point ``deepaas.v2.model: ai4lab-image-prep``).

Pillow only, so the module is small and starts fast: it is meant to be the
first step of a pipeline. ``accept`` selects the answer: ``image/png`` (the
small image as a file, what the next step takes) or ``application/json``.
"""

from __future__ import annotations

import io
from typing import Any

from aiohttp import web
from PIL import Image, ImageOps, ImageStat, UnidentifiedImageError
from webargs import fields, validate

from ai4lab_image_prep import NAME


class BadRequest(web.HTTPBadRequest, ValueError):
    """Bad input -> HTTP 400 with the reason (picklable: DEEPaaS may return it from a worker process)."""

    def __init__(self, reason: str) -> None:
        web.HTTPBadRequest.__init__(self, reason=reason.replace("\n", " "))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))

    def __str__(self) -> str:
        return self.reason


def get_metadata() -> dict[str, Any]:
    return {
        "id": NAME,
        "name": NAME,
        "description": "Any image of one digit -> the 8x8 grayscale image (ink bright) digit classifiers take.",
        "author": "ai4lab",
        "author-email": "ai4lab@example.org",
        "license": "Apache-2.0",
        "version": "0.1.0",
    }


def warm() -> None:
    """Nothing to load."""


def get_predict_args() -> dict[str, fields.Field]:
    return {
        # a plain Field with type=file: what both deepaas-run and deepaas-cli treat as an upload
        "image": fields.Field(required=True, metadata={
            "type": "file", "location": "form", "description": "Image of one digit (any format, size, colours)."}),
        "size": fields.Int(load_default=8, validate=validate.Range(min=4, max=64),
                           metadata={"description": "Side of the output image in pixels."}),
        "accept": fields.Str(load_default="application/json",
                             validate=validate.OneOf(["application/json", "image/png"]),
                             metadata={"location": "headers", "description": "image/png: the image itself"}),
    }


def ink(img: Image.Image) -> Image.Image:
    """Grayscale ink map, ink bright on black: alpha of a transparent canvas, else inverted if the paper is light."""
    img = ImageOps.exif_transpose(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA") and img.getchannel("A").getextrema()[0] < 250:
        return img.getchannel("A")
    gray = img.convert("L")
    w, h = gray.size
    edges = [gray.crop(box) for box in ((0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h))]
    paper = sorted(v for e in edges for v in e.getdata())
    if paper[len(paper) // 2] > 127:
        gray = ImageOps.invert(gray)
    return gray


def prepare(img: Image.Image, size: int = 8) -> Image.Image:
    """Crop to the ink, centre it in a square, shrink to ``size`` x ``size``, stretch to 0..255."""
    a = ink(img)
    low, high = ImageStat.Stat(a).extrema[0]
    if high - low < 16:
        raise BadRequest("the image is blank: no digit found")
    box = a.point(lambda v: 255 if v > low + 0.2 * (high - low) else 0).getbbox()
    crop = a.crop(box)
    side = max(crop.size)
    square = Image.new("L", (side, side), 0)
    square.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    return ImageOps.autocontrast(square.resize((size, size), Image.Resampling.BOX))


def predict(**kwargs: Any) -> Any:
    upload = kwargs.get("image")
    if upload is None:
        raise BadRequest("an 'image' file is required")
    path = getattr(upload, "filename", upload)
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError) as e:
        name = getattr(upload, "original_filename", None) or path
        raise BadRequest(f"cannot read {name!r} as an image: {e}") from None
    small = prepare(img, int(kwargs.get("size") or 8))
    if kwargs.get("accept") == "image/png":
        out = io.BytesIO()
        small.save(out, format="PNG")
        out.seek(0)
        return out
    return {"size": small.width, "pixels": [list(small.getdata())[r * small.width:(r + 1) * small.width]
                                            for r in range(small.height)]}


def get_train_args() -> dict[str, fields.Field]:
    return {}


def train(**kwargs: Any) -> dict[str, Any]:
    raise BadRequest("ai4lab-image-prep has nothing to train")


__all__ = ["get_metadata", "warm", "get_predict_args", "predict", "get_train_args", "train"]
