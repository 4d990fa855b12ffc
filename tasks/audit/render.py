"""Render PDF pages to pixels and map pixels and embedded images onto displayed-page points."""

from __future__ import annotations

import ctypes
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from core.audit_models import Box
from core.models import FailureReason
from tasks.audit.layout import PageGeometry, open_pdf, page_geometry
from tasks.parsers import ParseError
from tasks.parsers.pdf import PDFIUM_LOCK

__all__ = [
    "EmbeddedImage",
    "RenderedPage",
    "embedded_images",
    "pixel_digest",
    "render_pages",
]

POINTS_PER_INCH = 72.0


def pixel_digest(pixels: np.ndarray) -> str:
    """A SHA-256 of an image's BGR pixels and shape, equal only for identical images."""
    bgr = _as_bgr(pixels)
    digest = hashlib.sha256(f"{bgr.shape[1]}x{bgr.shape[0]}|".encode())
    digest.update(np.ascontiguousarray(bgr).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class EmbeddedImage:
    """An image object placed on a page: its pixel size, where it sits, and its pixel digest."""

    width_px: int
    height_px: int
    corners: tuple[tuple[float, float], ...]
    """Displayed-page points of the image's bottom-left, bottom-right, top-right, top-left."""
    digest: str | None = None
    """pixel_digest of the decoded image, when it was asked for."""

    @property
    def box(self) -> Box:
        """The smallest displayed-page box holding the placed image."""
        xs = [x for x, _ in self.corners]
        ys = [y for _, y in self.corners]
        return Box(x0=min(xs), y0=min(ys), x1=max(xs), y1=max(ys))

    @property
    def placed_size(self) -> tuple[float, float]:
        """Placed width and height in points along the image's own axes."""
        (ax, ay), (bx, by), _, (dx, dy) = self.corners
        return math.hypot(bx - ax, by - ay), math.hypot(dx - ax, dy - ay)

    @property
    def rotation_deg(self) -> float:
        """Counter-clockwise rotation of the image's bottom edge on the displayed page."""
        (ax, ay), (bx, by) = self.corners[0], self.corners[1]
        return math.degrees(math.atan2(by - ay, bx - ax))

    @property
    def mirrored(self) -> bool:
        """Whether the placement flips the image."""
        (ax, ay), (bx, by), _, (dx, dy) = self.corners
        return (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) < 0

    @property
    def dpi(self) -> float:
        """Effective resolution: pixels per inch along the image's coarser axis."""
        width, height = self.placed_size
        if width <= 0 or height <= 0:
            return math.inf
        return min(
            self.width_px * POINTS_PER_INCH / width, self.height_px * POINTS_PER_INCH / height
        )


@dataclass(frozen=True)
class RenderedPage:
    """One page rendered as displayed, with the mapping between its pixels and points."""

    number: int
    """1-based page number."""
    image: np.ndarray
    """BGR pixels, rows from the top of the displayed page."""
    scale: float
    """Pixels per point."""
    geometry: PageGeometry
    images: list[EmbeddedImage] = field(default_factory=list)

    @property
    def size(self) -> tuple[float, float]:
        """Displayed width and height in points."""
        return self.geometry.display_size

    def to_points(self, px: float, py: float) -> tuple[float, float]:
        """A pixel position as displayed-page points (origin bottom-left)."""
        return px / self.scale, self.size[1] - py / self.scale

    def to_pixels(self, x: float, y: float) -> tuple[float, float]:
        """A displayed-page point as a pixel position (origin top-left)."""
        return x * self.scale, (self.size[1] - y) * self.scale

    def box(self, pixels: np.ndarray) -> Box:
        """The displayed-page box around pixel positions (an N-by-2 array), clipped to the page."""
        points = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        width, height = self.size
        x0, x1 = (
            float(np.clip(v / self.scale, 0, width))
            for v in (points[:, 0].min(), points[:, 0].max())
        )
        top, bottom = (
            float(np.clip(v / self.scale, 0, height))
            for v in (points[:, 1].min(), points[:, 1].max())
        )
        return Box(x0=x0, y0=height - bottom, x1=x1, y1=height - top)


def render_pages(
    pdf: Path,
    pages: Iterable[int],
    *,
    dpi: float,
    digest_sizes: Callable[[int, int], bool] | None = None,
) -> Iterator[RenderedPage]:
    """Each asked-for page (1-based) rendered at `dpi`, one at a time, with its embedded images.

    Only one page's pixels are alive per step; images whose pixel size `digest_sizes` accepts are
    decoded and digested for exact comparison.
    """
    scale = dpi / POINTS_PER_INCH
    with PDFIUM_LOCK:
        document = open_pdf(pdf)
    try:
        page_count = len(document)
        for number in pages:
            if not 1 <= number <= page_count:
                raise ValueError(f"page {number} is outside 1..{page_count}")
            with PDFIUM_LOCK:
                try:
                    rendered = _render(document, number, scale, digest_sizes)
                except pdfium.PdfiumError as exc:
                    raise ParseError(
                        FailureReason.CORRUPT, f"PDF page {number} is not renderable: {exc}"
                    ) from exc
            yield rendered
    finally:
        with PDFIUM_LOCK:
            document.close()


def _render(
    document: pdfium.PdfDocument,
    number: int,
    scale: float,
    digest_sizes: Callable[[int, int], bool] | None,
) -> RenderedPage:
    """One page's pixels, geometry and images; the caller holds PDFIUM_LOCK."""
    page = document[number - 1]
    try:
        geometry = page_geometry(page)
        bitmap = page.render(scale=scale)
        try:
            image = _as_bgr(bitmap.to_numpy()).copy()
        finally:
            bitmap.close()
        images = embedded_images(page, geometry, digest_sizes)
    finally:
        page.close()
    return RenderedPage(number=number, image=image, scale=scale, geometry=geometry, images=images)


def embedded_images(
    page: pdfium.PdfPage,
    geometry: PageGeometry,
    digest_sizes: Callable[[int, int], bool] | None = None,
) -> list[EmbeddedImage]:
    """The page's top-level image objects placed in displayed-page points.

    The caller holds PDFIUM_LOCK. Images whose pixel size `digest_sizes` accepts are decoded and
    digested.
    """
    found: list[EmbeddedImage] = []
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=1):
        assert isinstance(obj, pdfium.PdfImage)
        width, height = ctypes.c_uint(), ctypes.c_uint()
        if not pdfium_c.FPDFImageObj_GetImagePixelSize(obj.raw, width, height):
            continue
        quad = obj.get_quad_points()  # user space: bottom-left, bottom-right, top-right, top-left
        corners = tuple(geometry.to_display(x, y) for x, y in quad)
        digest = None
        if digest_sizes is not None and digest_sizes(width.value, height.value):
            digest = _image_digest(obj)
        found.append(
            EmbeddedImage(
                width_px=width.value, height_px=height.value, corners=corners, digest=digest
            )
        )
    return found


def _image_digest(obj: pdfium.PdfImage) -> str | None:
    """The pixel digest of an image object's decoded pixels, or None when PDFium cannot decode."""
    try:
        bitmap = obj.get_bitmap(render=False)
    except pdfium.PdfiumError:
        return None
    return pixel_digest(bitmap.to_numpy())


def _as_bgr(pixels: np.ndarray) -> np.ndarray:
    """Pixels as a three-channel BGR uint8 array (grey expanded, alpha or padding dropped)."""
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels[:, :, :3]
