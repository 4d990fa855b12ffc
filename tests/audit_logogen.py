"""Logo test material: the reference design, look-alikes, and PDFs with logos at known places."""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from core.audit_models import Box

LOGO_PNG = (
    Path(__file__).resolve().parents[1] / "tasks" / "audit" / "policies" / "octavius-logo.png"
)

_NAVY, _ORANGE, _TEAL = (90, 40, 20), (0, 140, 255), (150, 160, 0)
_RED, _GOLD, _WHITE = (40, 40, 200), (0, 190, 230), (255, 255, 255)
_WORDS = [
    "informe",
    "anual",
    "resultados",
    "the",
    "quarterly",
    "report",
    "shows",
    "growth",
    "in",
    "every",
    "region",
    "with",
    "costs",
    "under",
    "control",
    "la",
    "empresa",
    "mantiene",
    "su",
    "compromiso",
    "con",
    "la",
    "calidad",
    "y",
    "el",
    "servicio",
    "al",
    "cliente",
    "revenue",
    "margin",
    "forecast",
    "estrategia",
    "objetivos",
    "equipo",
    "proyecto",
]


def draw_logo(text: str = "OCTAVIUS", sub: str = "pipelines", emblem: str = "ring") -> np.ndarray:
    """The reference logo (defaults) or a look-alike with other words or another emblem."""
    img = np.full((192, 480, 3), 255, np.uint8)
    if emblem == "ring":
        cv2.circle(img, (80, 96), 70, _NAVY, -1, cv2.LINE_AA)
        cv2.circle(img, (80, 96), 48, _WHITE, -1, cv2.LINE_AA)
        cv2.rectangle(img, (74, 20), (86, 50), _WHITE, -1)
    else:
        cv2.rectangle(img, (12, 28), (148, 164), _NAVY, -1)
        cv2.rectangle(img, (34, 50), (126, 142), _WHITE, -1)
    triangle = np.array([[80, 62], [112, 122], [48, 122]], np.int32)
    cv2.fillPoly(img, [triangle], _ORANGE, cv2.LINE_AA)
    cv2.rectangle(img, (66, 126), (94, 140), _TEAL, -1)
    cv2.circle(img, (150, 30), 9, _RED, -1, cv2.LINE_AA)
    cv2.circle(img, (150, 162), 6, _GOLD, -1, cv2.LINE_AA)
    cv2.putText(img, text, (170, 100), cv2.FONT_HERSHEY_DUPLEX, 1.75, _NAVY, 4, cv2.LINE_AA)
    cv2.putText(img, sub, (176, 146), cv2.FONT_HERSHEY_TRIPLEX, 1.05, _RED, 2, cv2.LINE_AA)
    cv2.rectangle(img, (172, 160), (300, 168), _TEAL, -1)
    cv2.rectangle(img, (310, 160), (350, 168), _ORANGE, -1)
    cv2.rectangle(img, (360, 160), (372, 168), _NAVY, -1)
    return img


def reference_logo() -> np.ndarray:
    """The shipped reference logo's pixels (BGR)."""
    image = cv2.imread(str(LOGO_PNG), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def recolour(image: np.ndarray, hue_shift: int) -> np.ndarray:
    """The image with every hue turned by `hue_shift` (OpenCV hue units, 0..179)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(int) + hue_shift) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def greyed(image: np.ndarray) -> np.ndarray:
    """The image in shades of grey."""
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


@dataclass
class Placement:
    """A logo drawn on a page: centre and width in points, rotation, stretch and pixels."""

    cx: float
    cy: float
    width: float
    rotation: float = 0.0
    """Counter-clockwise degrees."""
    stretch: float = 1.0
    """Height multiplier: 1.0 keeps the image's aspect ratio."""
    image: np.ndarray | None = None
    """Pixels to place; None places the reference file itself."""
    jpeg: bool = False
    """Embed as JPEG (pixels then differ from the reference)."""

    @property
    def height(self) -> float:
        pixels = self.image if self.image is not None else reference_logo()
        return float(self.width * pixels.shape[0] / pixels.shape[1] * self.stretch)

    @property
    def box(self) -> Box:
        """The displayed-page box around the placed (rotated) logo."""
        angle = math.radians(self.rotation)
        half_w, half_h = self.width / 2, self.height / 2
        xs, ys = [], []
        for dx, dy in ((-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)):
            xs.append(self.cx + dx * math.cos(angle) - dy * math.sin(angle))
            ys.append(self.cy + dx * math.sin(angle) + dy * math.cos(angle))
        return Box(x0=min(xs), y0=min(ys), x1=max(xs), y1=max(ys))


def _reader(placement: Placement) -> ImageReader | str:
    if placement.image is None and not placement.jpeg:
        return str(LOGO_PNG)
    pixels = placement.image if placement.image is not None else reference_logo()
    ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]) if placement.jpeg else (".png", [])
    ok, data = cv2.imencode(ext, pixels, params)
    assert ok
    return ImageReader(io.BytesIO(data.tobytes()))


def logo_pdf(
    path: Path,
    pages: list[list[Placement]],
    *,
    pagesize: tuple[float, float] = A4,
    body: bool = True,
    seed: int = 0,
) -> Path:
    """A PDF whose pages carry the given logo placements over lines of body text."""
    rng = random.Random(seed)
    page_canvas = canvas.Canvas(str(path), pagesize=pagesize)
    height = pagesize[1]
    for placements in pages:
        for placement in placements:
            page_canvas.saveState()
            page_canvas.translate(placement.cx, placement.cy)
            page_canvas.rotate(placement.rotation)
            page_canvas.drawImage(
                _reader(placement),
                -placement.width / 2,
                -placement.height / 2,
                width=placement.width,
                height=placement.height,
            )
            page_canvas.restoreState()
        if body:
            page_canvas.setFont("Helvetica", 10)
            y = height * 0.68
            while y > height * 0.25:
                page_canvas.drawString(60, y, " ".join(rng.choice(_WORDS) for _ in range(14)))
                y -= 13
        page_canvas.showPage()
    page_canvas.save()
    return path
