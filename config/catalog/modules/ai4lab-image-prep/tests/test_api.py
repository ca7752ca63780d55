"""The DEEPaaS contract and the image preparation, called as DEEPaaS calls them."""

from __future__ import annotations

import io
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from deepaas.model.v2.wrapper import UploadedFile
from PIL import Image, ImageDraw

from ai4lab_image_prep import api


def _upload(path: Path) -> UploadedFile:
    return UploadedFile(name="image", filename=str(path), content_type="image/png", original_filename=path.name)


def _stroke(tmp_path: Path, paper: int, ink: int, mode: str = "L") -> Path:
    """A 300x200 image with one thick vertical stroke off centre (a '1')."""
    img = Image.new("L", (300, 200), paper)
    ImageDraw.Draw(img).rectangle((200, 40, 220, 160), fill=ink)
    path = tmp_path / f"one-{paper}-{mode}.png"
    img.convert(mode).save(path)
    return path


def test_entry_point_is_registered() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="deepaas.v2.model")}
    assert eps.get("ai4lab-image-prep") == "ai4lab_image_prep.api"


@pytest.mark.parametrize("paper,ink,mode", [(255, 0, "L"), (0, 255, "L"), (240, 30, "RGB")])
def test_stroke_is_centred_and_bright(tmp_path: Path, paper: int, ink: int, mode: str) -> None:
    out = api.predict(image=_upload(_stroke(tmp_path, paper, ink, mode)), size=8, accept="application/json")
    rows = out["pixels"]
    assert out["size"] == 8 and len(rows) == 8
    assert max(rows[4][3:5]) == 255  # the ink, centred
    assert rows[4][0] == 0 and rows[4][7] == 0  # background dark, whatever the paper was


def test_png_answer_is_a_small_grayscale_image(tmp_path: Path) -> None:
    out = api.predict(image=_upload(_stroke(tmp_path, 255, 0)), size=8, accept="image/png")
    img = Image.open(io.BytesIO(out.getvalue()))
    assert img.size == (8, 8) and img.mode == "L"


def test_bad_input_is_a_bad_request(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    with pytest.raises(api.BadRequest, match="blank"):
        api.predict(image=_upload(blank))
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        api.predict(image=_upload(text))
