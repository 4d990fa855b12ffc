"""Rendering pages and mapping pixels and embedded images onto the page as displayed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import RectangleObject
from reportlab.pdfgen import canvas

from core.audit_models import Box
from tasks.audit.logo_match import load_logo_ref
from tasks.audit.render import pixel_digest, render_pages
from tests.audit_logogen import LOGO_PNG

# A green rectangle at user-space (100, 600)-(150, 630) and the logo at (300, 100)-(420, 148),
# on a 600x800 page cropped to (50, 50)-(550, 700): where each shows, per page rotation.
CASES = {
    0: (Box(x0=50, y0=550, x1=100, y1=580), Box(x0=250, y0=50, x1=370, y1=98), 0.0),
    90: (Box(x0=550, y0=400, x1=580, y1=450), Box(x0=50, y0=130, x1=98, y1=250), -90.0),
    180: (Box(x0=400, y0=70, x1=450, y1=100), Box(x0=130, y0=552, x1=250, y1=600), 180.0),
    270: (Box(x0=70, y0=50, x1=100, y1=100), Box(x0=552, y0=250, x1=600, y1=370), 90.0),
}


def _pdf(tmp_path: Path, rotation: int) -> Path:
    source = tmp_path / "page.pdf"
    page_canvas = canvas.Canvas(str(source), pagesize=(600, 800))
    page_canvas.setFillColorRGB(0, 1, 0)
    page_canvas.rect(100, 600, 50, 30, stroke=0, fill=1)
    page_canvas.drawImage(str(LOGO_PNG), 300, 100, width=120, height=48)
    page_canvas.showPage()
    page_canvas.save()
    page = PdfReader(source).pages[0]
    page.cropbox = RectangleObject((50, 50, 550, 700))
    if rotation:
        page.rotate(rotation)
    writer = PdfWriter()
    writer.add_page(page)
    out = tmp_path / f"rotated-{rotation}.pdf"
    writer.write(out)
    return out


def _close(a: Box, b: Box, tolerance: float) -> bool:
    return all(abs(getattr(a, k) - getattr(b, k)) <= tolerance for k in ("x0", "y0", "x1", "y1"))


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_render_maps_pixels_to_displayed_points(tmp_path: Path, rotation: int) -> None:
    green_box, _, _ = CASES[rotation]
    [page] = render_pages(_pdf(tmp_path, rotation), [1], dpi=144)
    expected_size = (650, 500) if rotation in (90, 270) else (500, 650)
    assert page.size == expected_size
    assert page.image.shape[:2] == (expected_size[1] * 2, expected_size[0] * 2)
    image = page.image.astype(int)
    rows, cols = np.nonzero((image[:, :, 1] > 200) & (image[:, :, 2] < 60) & (image[:, :, 0] < 60))
    # Pixel (c, r) covers c..c+1, r..r+1.
    corners = np.array([[cols.min(), rows.min()], [cols.max() + 1, rows.max() + 1]])
    assert _close(page.box(corners), green_box, 0.6)
    x, y = page.to_points(*page.to_pixels(123.0, 456.0))
    assert (x, y) == pytest.approx((123.0, 456.0))


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_embedded_images_are_placed_and_digested(tmp_path: Path, rotation: int) -> None:
    _, logo_box, logo_rotation = CASES[rotation]
    ref = load_logo_ref(LOGO_PNG)
    [page] = render_pages(_pdf(tmp_path, rotation), [1], dpi=72, digest_sizes=lambda w, h: True)
    [image] = page.images
    assert _close(image.box, logo_box, 0.01)
    assert image.rotation_deg == pytest.approx(logo_rotation)
    assert image.placed_size == pytest.approx((120, 48))
    assert (image.width_px, image.height_px) == ref.size_px
    assert image.digest == ref.digest
    assert image.dpi == pytest.approx(480 / (120 / 72))
    assert not image.mirrored


def test_pixel_digest_tells_one_changed_pixel() -> None:
    pixels = np.full((4, 5, 3), 255, np.uint8)
    changed = pixels.copy()
    changed[2, 3, 1] = 254
    assert pixel_digest(pixels) == pixel_digest(pixels.copy())
    assert pixel_digest(pixels) != pixel_digest(changed)
    assert pixel_digest(pixels[:, :, 0]) == pixel_digest(pixels)


def test_render_refuses_a_page_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        list(render_pages(_pdf(tmp_path, 0), [2], dpi=72))
