"""Reading words, boxes and paragraphs of real PDFs, and refusing PDFs that cannot be audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.models import FailureReason
from tasks.audit.layout import ParseError, inspect_pdf, read_paragraphs
from tests.audit_docgen import HEADING_SIZE, hyphenate, make_audit_pdf
from tests.docgen import make_corrupt_pdf, make_image_only_pdf, make_pdf

A4_W, A4_H = 595.28, 841.89
TEXT = [
    "# Informe anual",
    "Hola mundo desde Octavius.",
    "Segundo párrafo con dos líneas\nde texto.",
]


def _layout(tmp_path: Path, **kw: object) -> list[tuple[str, tuple[float, float, float, float]]]:
    pdf = make_audit_pdf(tmp_path / "doc.pdf", [TEXT], **kw)  # type: ignore[arg-type]
    paragraphs = read_paragraphs(pdf)
    return [(w.text, (w.box.x0, w.box.y0, w.box.x1, w.box.y1)) for p in paragraphs for w in p.words]


def test_read_paragraphs_groups_lines_and_reads_fonts(tmp_path: Path) -> None:
    pdf = make_audit_pdf(tmp_path / "doc.pdf", [TEXT])
    paragraphs = read_paragraphs(pdf)
    assert [p.text for p in paragraphs] == [
        "Informe anual",
        "Hola mundo desde Octavius.",
        "Segundo párrafo con dos líneas de texto.",
        "1",
    ]
    heading, body = paragraphs[0], paragraphs[1]
    assert heading.font == "BitstreamVeraSans-Bold" and heading.size == HEADING_SIZE
    assert body.font == "BitstreamVeraSans-Roman" and body.size == 11.0
    hola = body.words[0].box
    # Drawn at x = 72 pt, baseline 841.89 - 72 - 16*1.3 - 12 - 11*1.3 ≈ 722.8 pt from the bottom.
    assert hola.x0 == pytest.approx(72, abs=0.5)
    assert hola.y0 < 722.8 < hola.y1 < 722.8 + 11


@pytest.mark.parametrize(
    ("kw", "shift"),
    [
        # rotated pages drawn upright: the displayed coordinates do not change
        ({"rotate": 90}, (0.0, 0.0)),
        ({"rotate": 180}, (0.0, 0.0)),
        ({"rotate": 270}, (0.0, 0.0)),
        # a crop box moves the origin to its lower-left corner
        ({"cropbox": (50, 100, 545, 800)}, (-50.0, -100.0)),
    ],
    ids=["rot90", "rot180", "rot270", "cropbox"],
)
def test_word_boxes_are_in_displayed_page_points(
    tmp_path: Path, kw: dict[str, object], shift: tuple[float, float]
) -> None:
    (tmp_path / "plain").mkdir()
    plain = _layout(tmp_path / "plain")
    other = _layout(tmp_path, **kw)
    assert [text for text, _ in other] == [text for text, _ in plain]
    for (_, (a0, b0, a1, b1)), (_, (c0, d0, c1, d1)) in zip(plain, other, strict=True):
        dx, dy = shift
        assert (c0, d0, c1, d1) == pytest.approx((a0 + dx, b0 + dy, a1 + dx, b1 + dy), abs=0.5)


def test_hyphenated_word_is_joined_with_box_on_first_line(tmp_path: Path) -> None:
    pdf = make_audit_pdf(
        tmp_path / "doc.pdf", [[hyphenate("la responsabilidad es nuestra", "responsabilidad", 6)]]
    )
    (paragraph, _number) = read_paragraphs(pdf)
    assert paragraph.text == "la responsabilidad es nuestra"
    word = paragraph.words[1]
    assert word.box.y0 > paragraph.words[2].box.y1 - 2  # first line only, above "es"


def test_inspect_pdf_counts_pages_and_detects_language(tmp_path: Path) -> None:
    pdf = make_audit_pdf(tmp_path / "doc.pdf", [["The quick report of the year."]] * 3)
    info = inspect_pdf(pdf, max_pages=10)
    assert info.page_count == 3 and info.language == "en"
    with pytest.raises(ParseError) as too_many:
        inspect_pdf(pdf, max_pages=2)
    assert too_many.value.reason is FailureReason.TOO_LARGE


def _encrypted_pdf(path: Path) -> Path:
    return make_pdf(path, ["secret"], encrypt_password="pw")


def _empty_pdf(path: Path) -> Path:
    from pypdf import PdfWriter

    with path.open("wb") as out:
        PdfWriter().write(out)
    return path


@pytest.mark.parametrize(
    ("make", "reason", "words"),
    [
        (_encrypted_pdf, FailureReason.ENCRYPTED, "encrypted"),
        (make_corrupt_pdf, FailureReason.CORRUPT, "not readable"),
        (_empty_pdf, FailureReason.EMPTY, "no pages"),
        (make_image_only_pdf, FailureReason.NO_TEXT, "image-only"),
        (lambda p: p.write_bytes(b"") and p, FailureReason.EMPTY, "0 bytes"),
        (lambda p: p.write_text("hello") and p, FailureReason.CORRUPT, "not a PDF"),
    ],
    ids=["encrypted", "corrupt", "no-pages", "image-only", "zero-bytes", "not-pdf"],
)
def test_inspect_pdf_refuses_unauditable_files(
    tmp_path: Path, make: object, reason: FailureReason, words: str
) -> None:
    path = tmp_path / "bad.pdf"
    make(path)  # type: ignore[operator]
    with pytest.raises(ParseError) as raised:
        inspect_pdf(path, max_pages=10)
    assert raised.value.reason is reason
    assert words in str(raised.value)
