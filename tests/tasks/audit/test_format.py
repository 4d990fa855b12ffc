"""The format auditor on real PDFs with planted defects, and nothing flagged on a clean one."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reportlab.lib.pagesizes import A4, A5, landscape
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from core.audit_models import AuditPolicy, FontRule, Severity
from tasks.audit.format import audit_format, font_family

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
LINE = "El informe trimestral resume los resultados del equipo y los objetivos."


def _register() -> None:
    registered = set(pdfmetrics.getRegisteredFontNames())
    for name, file in (
        ("DejaVuSans", "DejaVuSans.ttf"),
        ("DejaVuSans-Bold", "DejaVuSans-Bold.ttf"),
        ("DejaVuSerif", "DejaVuSerif.ttf"),
        ("DejaVuSansMono", "DejaVuSansMono.ttf"),
    ):
        if name not in registered:
            pdfmetrics.registerFont(TTFont(name, str(DEJAVU / file)))


@dataclass
class Page:
    """One generated page: size, number label, and extra text or images on it."""

    size: tuple[float, float] = A4
    number: str | None = "auto"
    lines: list[tuple[str, str, float, float, float]] = field(default_factory=list)
    """(text, font, size, x, y) drawn besides the clean body."""
    image_dpi: float | None = None
    body_font: str = "DejaVuSans"
    body_size: float = 11.0


def _png(pixels: int) -> ImageReader:
    rng = np.random.default_rng(pixels)
    array = rng.integers(0, 255, (pixels, pixels, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    buffer.seek(0)
    return ImageReader(buffer)


def _pdf(path: Path, pages: list[Page]) -> Path:
    _register()
    canvas = Canvas(str(path), pagesize=A4)
    for index, page in enumerate(pages, start=1):
        canvas.setPageSize(page.size)
        width, height = page.size
        canvas.setFont("DejaVuSans-Bold", 18)
        canvas.drawString(72, height - 90, "Informe trimestral")
        canvas.setFont(page.body_font, page.body_size)
        for row in range(8):
            canvas.drawString(72, height - 130 - row * 15, LINE[:48])
        for text, font, size, x, y in page.lines:
            canvas.setFont(font, size)
            canvas.drawString(x, y, text)
        if page.image_dpi is not None:
            # A 2-inch square image with 200 pixels a side: 100 dpi; 600 pixels: 300 dpi.
            canvas.drawImage(_png(int(page.image_dpi * 2)), 72, height - 450, 144, 144)
        if page.number is not None:
            canvas.setFont("DejaVuSans", 10)
            label = str(index) if page.number == "auto" else page.number
            canvas.drawCentredString(width / 2, 45, label)
        canvas.showPage()
    canvas.save()
    return path


def _policy(**fonts: object) -> AuditPolicy:
    return AuditPolicy(fonts=FontRule(allowed=["DejaVu Sans", "Helvetica"], **fonts))


def _found(
    path: Path, pages: list[Page], policy: AuditPolicy | None = None
) -> list[tuple[str, int | None]]:
    findings = audit_format(_pdf(path, pages), policy or _policy())
    return sorted((f.rule, f.page) for f in findings)


def test_format_clean_document_flags_nothing(tmp_path: Path) -> None:
    pages = [Page(image_dpi=300), Page(), Page(size=(612.0, 792.0))]
    assert _found(tmp_path / "clean.pdf", pages) == []


@pytest.mark.parametrize(
    ("defect", "expected"),
    [
        # A5 is not an allowed size
        (Page(size=A5), [("format.page_size", 2)]),
        # A4 turned sideways: right size, wrong orientation
        (Page(size=landscape(A4)), [("format.orientation", 2)]),
        # text starting 20 pt from the left edge and text at the very top
        (Page(lines=[("Nota al margen", "DejaVuSans", 11, 20, 500)]), [("format.margin", 2)]),
        (Page(lines=[("Cabecera", "DejaVuSans", 11, 200, 830)]), [("format.margin", 2)]),
        # a serif font the policy does not allow (embedded, so only the font is wrong)
        (Page(lines=[("Serif", "DejaVuSerif", 11, 72, 300)]), [("format.font", 2)]),
        # reportlab's standard Helvetica: allowed, but never embedded
        (Page(lines=[("Helvetica", "Helvetica", 11, 72, 300)]), [("format.font_embedding", 2)]),
        # a 100 dpi image (minimum 150)
        (Page(image_dpi=100), [("format.image_resolution", 2)]),
        # a page without its number
        (Page(number=None), [("format.page_number_missing", 2)]),
        # the second page numbered 7
        (Page(number="7"), [("format.page_number_sequence", 2)]),
        # a heading at 40 pt and text at 6 pt
        (Page(lines=[("Enorme", "DejaVuSans-Bold", 40, 72, 300)]), [("format.heading_size", 2)]),
        (Page(lines=[("diminuto " * 3, "DejaVuSans", 6, 72, 300)]), [("format.text_size", 2)]),
    ],
)
def test_format_finds_each_planted_defect(
    tmp_path: Path, defect: Page, expected: list[tuple[str, int]]
) -> None:
    assert _found(tmp_path / "doc.pdf", [Page(), defect, Page()]) == expected


def test_format_body_size_outside_range(tmp_path: Path) -> None:
    pages = [Page(body_size=14.0), Page(body_size=14.0)]
    assert _found(tmp_path / "big.pdf", pages) == [("format.body_size", 1)]


def test_format_margin_finding_boxes_the_text(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path / "margin.pdf", [Page(lines=[("Fuera", "DejaVuSans", 11, 20, 500)])])
    [finding] = audit_format(pdf, _policy(), language="es")
    assert finding.rule == "format.margin" and finding.severity is Severity.WARNING
    assert finding.box is not None
    assert (
        finding.box.x0 == pytest.approx(20, abs=1.5) and 495 < finding.box.y0 < 500 < finding.box.y1
    )
    assert finding.message.startswith("Texto dentro del margen izquierdo (página 1)")
    assert finding.message_en.startswith("Text inside the left margin (page 1)")


def test_format_missing_numbers_are_one_finding(tmp_path: Path) -> None:
    pages = [Page(), Page(number=None), Page(number=None), Page(), Page(number=None)]
    findings = audit_format(_pdf(tmp_path / "numbers.pdf", pages), _policy())
    assert [(f.rule, f.page, f.actual) for f in findings] == [
        ("format.page_number_missing", 2, "none on page 2-3, 5")
    ]


def test_format_page_numbers_not_required(tmp_path: Path) -> None:
    policy = _policy().model_copy(update={"require_page_numbers": False})
    assert _found(tmp_path / "free.pdf", [Page(number=None)], policy) == []


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("ABCDEF+DejaVuSans-Bold", "dejavusans"),
        ("Arial,Bold", "arial"),
        ("ArialMT", "arial"),
        ("TimesNewRomanPS-BoldMT", "timesnewroman"),
        ("Times New Roman", "timesnewroman"),
        ("DejaVuSansMono", "dejavusansmono"),
    ],
)
def test_font_family_ignores_subset_and_style(name: str, family: str) -> None:
    assert font_family(name) == family
