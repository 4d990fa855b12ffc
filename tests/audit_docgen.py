"""Real PDFs for the audit tests and evaluations: embedded fonts, forced breaks, logos, rotation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import reportlab
from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

# Bitstream Vera ships inside reportlab, so these fonts are embedded (as subsets) everywhere.
_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
EMBEDDED_FONTS = {"Vera": "Vera.ttf", "VeraBd": "VeraBd.ttf", "VeraIt": "VeraIt.ttf"}
BODY_FONT = "Vera"
HEADING_FONT = "VeraBd"
BODY_SIZE = 11.0
HEADING_SIZE = 16.0
MARGIN = 72.0
LEADING = 1.3
PARAGRAPH_GAP = 12.0

Para = str | tuple[str, str, float]
"""A paragraph: text, or (text, font, size); "# " starts a heading, "\\n" forces a line break."""


@dataclass(frozen=True)
class LogoSpec:
    """A logo image pasted on a page at a box in points (origin bottom-left), maybe rotated."""

    image: Path
    page: int
    x: float
    y: float
    width: float
    height: float
    rotate_deg: float = 0.0


def register_fonts() -> None:
    """Registers the embedded Vera fonts with reportlab (idempotent)."""
    registered = set(pdfmetrics.getRegisteredFontNames())
    for name, file in EMBEDDED_FONTS.items():
        if name not in registered:
            pdfmetrics.registerFont(TTFont(name, str(_FONT_DIR / file)))


def make_logo_png(path: Path, size: tuple[int, int] = (360, 180)) -> Path:
    """Writes a distinctive reference logo (shapes and letters with many corners)."""
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle([4, 4, width - 5, height - 5], outline=(20, 40, 120), width=6)
    draw.ellipse([20, 20, height - 20, height - 20], fill=(200, 30, 40))
    draw.polygon(
        [(height // 2, 30), (height - 30, height - 30), (30, height - 30)], fill=(250, 200, 0)
    )
    for index in range(6):
        x = height + 10 + index * (width - height - 20) // 6
        top = 30 + (index % 3) * 20
        draw.rectangle([x, top, x + 18, height - 30], fill=(20, 40, 120))
        draw.line([x, height - 30, x + 30, top], fill=(0, 130, 60), width=4)
    image.save(path)
    return path


def make_audit_pdf(
    path: Path,
    pages: Sequence[Sequence[Para]],
    *,
    font: str = BODY_FONT,
    size: float = BODY_SIZE,
    page_size: tuple[float, float] = A4,
    margin: float = MARGIN,
    logos: Sequence[LogoSpec] = (),
    rotate: int = 0,
    cropbox: tuple[float, float, float, float] | None = None,
    page_numbers: bool = True,
    encrypt_password: str | None = None,
    title: str | None = "Audit test document",
) -> Path:
    """Writes a text PDF, one list of paragraphs per page, with embedded fonts by default.

    Everything is laid out in the coordinates of the page as displayed (`page_size`, origin
    bottom-left): `rotate` sets every page's /Rotate and draws through the matching transform,
    so the text reads upright in a viewer; `cropbox` (x0, y0, x1, y1, in the unrotated page
    space) sets every page's crop box. Page numbers are centred at the bottom.
    """
    register_fonts()
    encrypt = StandardEncryption(encrypt_password) if encrypt_password is not None else None
    canvas = Canvas(str(path), pagesize=page_size, encrypt=encrypt)
    if title is not None:
        canvas.setTitle(title)
    width, height = page_size
    for number, page in enumerate(pages, start=1):
        if rotate:
            canvas.setPageRotation(rotate)
            canvas.transform(*_display_transform(rotate, width, height))
        if cropbox is not None:
            canvas.setCropBox(cropbox)
        y = height - margin
        for paragraph in page:
            text, para_font, para_size = (
                paragraph if isinstance(paragraph, tuple) else (paragraph, font, size)
            )
            if text.startswith("# "):
                text, para_font, para_size = text[2:], HEADING_FONT, HEADING_SIZE
            canvas.setFont(para_font, para_size)
            for forced in text.split("\n"):
                for line in simpleSplit(forced, para_font, para_size, width - 2 * margin):
                    y -= para_size * LEADING
                    canvas.drawString(margin, y, line)
            y -= PARAGRAPH_GAP
        for logo in logos:
            if logo.page == number:
                _draw_logo(canvas, logo)
        if page_numbers:
            canvas.setFont(font, 9)
            canvas.drawCentredString(width / 2, margin / 2, str(number))
        canvas.showPage()
    canvas.save()
    return path


def _display_transform(
    rotate: int, width: float, height: float
) -> tuple[float, float, float, float, float, float]:
    """The matrix from displayed-page to user-space coordinates for a page rotation."""
    # reportlab swaps the media box of a page rotated by 90 or 270 degrees.
    if rotate == 90:
        return (0, 1, -1, 0, height, 0)
    if rotate == 180:
        return (-1, 0, 0, -1, width, height)
    if rotate == 270:
        return (0, -1, 1, 0, 0, width)
    raise ValueError(f"rotation must be 0, 90, 180 or 270, not {rotate}")


def _draw_logo(canvas: Canvas, logo: LogoSpec) -> None:
    """Draws the logo image with its lower-left corner at (x, y), rotated about its centre."""
    canvas.saveState()
    canvas.translate(logo.x + logo.width / 2, logo.y + logo.height / 2)
    canvas.rotate(logo.rotate_deg)
    canvas.drawImage(
        str(logo.image), -logo.width / 2, -logo.height / 2, width=logo.width, height=logo.height
    )
    canvas.restoreState()


def break_lines(text: str, words_per_line: int) -> str:
    """The text with a forced line break after every `words_per_line` words."""
    words = text.split()
    return "\n".join(
        " ".join(words[i : i + words_per_line]) for i in range(0, len(words), words_per_line)
    )


def hyphenate(text: str, word: str, at: int) -> str:
    """The text with `word` split by a hyphen and a forced line break after `at` letters."""
    return text.replace(word, f"{word[:at]}-\n{word[at:]}", 1)
