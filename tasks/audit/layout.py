"""Words with boxes and paragraphs of a PDF as displayed, for the auditors to read and locate."""

from __future__ import annotations

import ctypes
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from core.audit_models import Box, Paragraph, Word
from core.language import detect_language
from core.models import FailureReason, Language
from tasks.parsers import ParseError
from tasks.parsers.pdf import PDFIUM_LOCK

__all__ = [
    "PageGeometry",
    "ParseError",
    "PdfInfo",
    "inspect_pdf",
    "page_geometry",
    "read_paragraphs",
]

# PDFium replaces a hyphen it joined across a line end with U+0002 (U+FFFE in newer builds).
_JOINED_HYPHENS = frozenset("\x02\ufffe")
_LINE_BREAKS = frozenset("\r\n")
_SPACES = frozenset(" \t\xa0\u2002\u2003\u2009\u200a\u3000")
_SUBSET_PREFIX = re.compile(r"^[A-Z]{6}\+")
_HYPHEN_END = re.compile(r"[^\W\d_][-\u00ad\u2010]$")
_LANGUAGE_SAMPLE_PAGES = 20
_LANGUAGE_SAMPLE_CHARS = 20_000
_FONT_NAME_BYTES = 256

# Paragraph breaks, in multiples of the line height.
_PARAGRAPH_GAP = 0.55
_SIZE_CHANGE = 0.15


class PdfInfo(NamedTuple):
    """What opening a PDF told: its page count and the language of its text."""

    page_count: int
    language: Language


@dataclass(frozen=True)
class PageGeometry:
    """How user-space points of a page map onto the page as displayed (crop box and rotation)."""

    crop: tuple[float, float, float, float]
    rotation: int

    @property
    def display_size(self) -> tuple[float, float]:
        """Width and height of the page as displayed, in points."""
        width, height = self.crop[2] - self.crop[0], self.crop[3] - self.crop[1]
        return (height, width) if self.rotation in (90, 270) else (width, height)

    def to_display(self, x: float, y: float) -> tuple[float, float]:
        """A user-space point in displayed-page coordinates (origin bottom-left)."""
        x0, y0, x1, y1 = self.crop
        u, v, width, height = x - x0, y - y0, x1 - x0, y1 - y0
        if self.rotation == 90:
            return v, width - u
        if self.rotation == 180:
            return width - u, height - v
        if self.rotation == 270:
            return height - v, u
        return u, v

    def to_user(self, x: float, y: float) -> tuple[float, float]:
        """A displayed-page point back in user-space coordinates."""
        x0, y0, x1, y1 = self.crop
        width, height = x1 - x0, y1 - y0
        if self.rotation == 90:
            u, v = width - y, x
        elif self.rotation == 180:
            u, v = width - x, height - y
        elif self.rotation == 270:
            u, v = y, height - x
        else:
            u, v = x, y
        return u + x0, v + y0

    def rect(
        self, left: float, bottom: float, right: float, top: float
    ) -> tuple[float, float, float, float]:
        """A user-space rectangle as displayed-page (x0, y0, x1, y1)."""
        if self.rotation == 0:
            x0, y0 = self.crop[0], self.crop[1]
            return left - x0, bottom - y0, right - x0, top - y0
        ax, ay = self.to_display(left, bottom)
        bx, by = self.to_display(right, top)
        return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)

    def box(self, left: float, bottom: float, right: float, top: float) -> Box:
        """A user-space rectangle as a displayed-page Box."""
        x0, y0, x1, y1 = self.rect(left, bottom, right, top)
        return Box(x0=x0, y0=y0, x1=x1, y1=y1)

    def user_rect(self, box: Box) -> tuple[float, float, float, float]:
        """A displayed-page Box as a user-space (left, bottom, right, top) rectangle."""
        ax, ay = self.to_user(box.x0, box.y0)
        bx, by = self.to_user(box.x1, box.y1)
        return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def page_geometry(page: pdfium.PdfPage) -> PageGeometry:
    """The crop box and rotation of an open page."""
    rotation = page.get_rotation() % 360
    return PageGeometry(crop=tuple(page.get_cropbox()), rotation=rotation)


def open_pdf(pdf: Path) -> pdfium.PdfDocument:
    """The open document, or ParseError saying why it cannot be opened; hold PDFIUM_LOCK."""
    try:
        size = pdf.stat().st_size
    except FileNotFoundError as exc:
        raise ParseError(FailureReason.NOT_FOUND, f"file not found: {pdf.name}") from exc
    if size == 0:
        raise ParseError(FailureReason.EMPTY, "file is empty (0 bytes)")
    with pdf.open("rb") as stream:
        if b"%PDF-" not in stream.read(1024):
            raise ParseError(FailureReason.CORRUPT, "not a PDF file (no %PDF header)")
    try:
        return pdfium.PdfDocument(pdf)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ParseError(
                FailureReason.ENCRYPTED, "PDF is encrypted (password required)"
            ) from exc
        if _has_no_pages(pdf):
            raise ParseError(FailureReason.EMPTY, "PDF has no pages") from exc
        raise ParseError(FailureReason.CORRUPT, f"PDF is not readable: {exc}") from exc


def _has_no_pages(pdf: Path) -> bool:
    """Whether pypdf reads the file as a well-formed PDF of zero pages (PDFium refuses those)."""
    try:
        return len(PdfReader(pdf).pages) == 0
    except (PdfReadError, ValueError, OSError):
        return False


def inspect_pdf(pdf: Path, *, max_pages: int) -> PdfInfo:
    """The page count and language of an auditable PDF; ParseError when it cannot be audited."""
    with PDFIUM_LOCK:
        document = open_pdf(pdf)
        try:
            page_count = len(document)
            if page_count == 0:
                raise ParseError(FailureReason.EMPTY, "PDF has no pages")
            if page_count > max_pages:
                raise ParseError(
                    FailureReason.TOO_LARGE, f"PDF has {page_count} pages (limit {max_pages})"
                )
            sample: list[str] = []
            chars = 0
            for index in range(page_count):
                if index >= _LANGUAGE_SAMPLE_PAGES and chars:
                    break
                text = _page_text(document, index)
                sample.append(text)
                chars += len(text.strip())
                if chars >= _LANGUAGE_SAMPLE_CHARS:
                    break
        except pdfium.PdfiumError as exc:
            raise ParseError(FailureReason.CORRUPT, f"PDF is not readable: {exc}") from exc
        finally:
            document.close()
    if not chars:
        raise ParseError(FailureReason.NO_TEXT, "image-only PDF: no text layer on any page")
    return PdfInfo(page_count=page_count, language=detect_language(" ".join(sample)))


def _page_text(document: pdfium.PdfDocument, index: int) -> str:
    """The plain text of one page."""
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            return str(textpage.get_text_range())
        finally:
            textpage.close()
    finally:
        page.close()


def read_paragraphs(pdf: Path) -> list[Paragraph]:
    """Every paragraph of the PDF, page by page, with word boxes in displayed-page points."""
    paragraphs: list[Paragraph] = []
    with PDFIUM_LOCK:
        document = open_pdf(pdf)
        try:
            for index in range(len(document)):
                paragraphs.extend(_page_paragraphs(document, index))
        except pdfium.PdfiumError as exc:
            raise ParseError(FailureReason.CORRUPT, f"PDF is not readable: {exc}") from exc
        finally:
            document.close()
    return paragraphs


@dataclass
class _Word:
    text: str = ""
    left: float = float("inf")
    bottom: float = float("inf")
    right: float = float("-inf")
    top: float = float("-inf")
    font: str | None = None
    size: float | None = None
    joined: bool = False
    """PDFium joined a hyphenated word across a line end: later characters sit on the next line."""

    def add(self, char: str, rect: tuple[float, float, float, float]) -> None:
        self.text += char
        if self.joined:
            return
        self.left, self.bottom = min(self.left, rect[0]), min(self.bottom, rect[1])
        self.right, self.top = max(self.right, rect[2]), max(self.top, rect[3])


@dataclass
class _Line:
    words: list[_Word] = field(default_factory=list)

    @property
    def left(self) -> float:
        return min(w.left for w in self.words)

    @property
    def top(self) -> float:
        return max(w.top for w in self.words)

    @property
    def bottom(self) -> float:
        return min(w.bottom for w in self.words)

    @property
    def height(self) -> float:
        return statistics.median(w.top - w.bottom for w in self.words)


def _page_paragraphs(document: pdfium.PdfDocument, index: int) -> list[Paragraph]:
    """The paragraphs of one page, closing the page afterwards."""
    page = document[index]
    try:
        geometry = page_geometry(page)
        textpage = page.get_textpage()
        try:
            lines = _lines(textpage, geometry)
        finally:
            textpage.close()
    finally:
        page.close()
    groups = _group(lines)
    return [_paragraph(group, index + 1) for group in groups]


def _lines(textpage: pdfium.PdfTextPage, geometry: PageGeometry) -> list[_Line]:
    """The page's characters gathered into words and lines (displayed-page points)."""
    raw = textpage.raw
    lines: list[_Line] = []
    line = _Line()
    word = _Word()

    def end_word() -> None:
        nonlocal word
        if word.text:
            line.words.append(word)
        word = _Word()

    def end_line() -> None:
        nonlocal line
        end_word()
        if line.words:
            lines.append(line)
        line = _Line()

    for char_index in range(textpage.count_chars()):
        char = chr(pdfium_c.FPDFText_GetUnicode(raw, char_index))
        if char in _LINE_BREAKS:
            end_line()
            continue
        if char in _SPACES:
            end_word()
            continue
        if char in _JOINED_HYPHENS:
            word.joined = bool(word.text)
            continue
        if not char.isprintable():
            continue
        left, bottom, right, top = textpage.get_charbox(char_index, loose=True)
        if right <= left and top <= bottom:
            continue
        rect = geometry.rect(left, bottom, right, top)
        if word.joined and not _continues(word, char, rect):
            # PDFium also joins a line-end hyphen to unrelated text (a page number below).
            word.text += "-"
            word.joined = False
            end_line()
        elif word.text and not word.joined and _off_line(word, rect):
            end_line()
        if not word.text:
            word.font, word.size = _font(raw, char_index)
        word.add(char, rect)
    end_line()
    return lines


def _off_line(word: _Word, rect: tuple[float, float, float, float]) -> bool:
    """Whether a character sits on another line than the word it would continue."""
    height = max(word.top - word.bottom, 1.0)
    middle = (rect[1] + rect[3]) / 2
    return not word.bottom - 0.2 * height <= middle <= word.top + 0.2 * height


def _continues(word: _Word, char: str, rect: tuple[float, float, float, float]) -> bool:
    """Whether a character plausibly continues a hyphenated word on the next line."""
    if len(word.text) > len(word.text.rstrip("-")) or not char.islower():
        return False
    height = max(word.top - word.bottom, 1.0)
    middle = (rect[1] + rect[3]) / 2
    return word.bottom - 2.5 * height < middle < word.bottom


def _font(raw: pdfium_c.FPDF_TEXTPAGE, char_index: int) -> tuple[str | None, float | None]:
    """The font name (without subset prefix) and size of a character."""
    buffer = ctypes.create_string_buffer(_FONT_NAME_BYTES)
    flags = ctypes.c_int()
    length = pdfium_c.FPDFText_GetFontInfo(
        raw, char_index, buffer, _FONT_NAME_BYTES, ctypes.byref(flags)
    )
    name = _SUBSET_PREFIX.sub("", buffer.value.decode("utf-8", "replace")) if length else None
    size = float(pdfium_c.FPDFText_GetFontSize(raw, char_index))
    return name or None, round(size, 2) if size > 0 else None


def _group(lines: list[_Line]) -> list[list[_Line]]:
    """Consecutive lines grouped into paragraphs by spacing, size and position."""
    groups: list[list[_Line]] = []
    for line in lines:
        if groups and not _breaks(groups[-1][-1], line):
            groups[-1].append(line)
        else:
            groups.append([line])
    return groups


def _breaks(previous: _Line, line: _Line, /) -> bool:
    """Whether `line` starts a new paragraph after `previous`."""
    unit = max(previous.height, line.height, 1.0)
    gap = previous.bottom - line.top
    if gap < -0.5 * unit or gap > _PARAGRAPH_GAP * unit:
        return True
    return abs(line.height - previous.height) > _SIZE_CHANGE * unit


def _paragraph(lines: list[_Line], page: int) -> Paragraph:
    """One paragraph: words de-hyphenated across line ends, boxes on the displayed page."""
    words: list[_Word] = []
    for line in lines:
        first = line.words[0]
        if words and _HYPHEN_END.search(words[-1].text) and first.text[:1].islower():
            words[-1].text = words[-1].text[:-1] + first.text
            words.extend(line.words[1:])
        else:
            words.extend(line.words)
    weights: Counter[tuple[str | None, float | None]] = Counter()
    for word in words:
        weights[(word.font, word.size)] += len(word.text)
    font, size = weights.most_common(1)[0][0]
    return Paragraph(
        page=page,
        text=" ".join(word.text for word in words),
        words=[
            Word(text=w.text, box=Box(x0=w.left, y0=w.bottom, x1=w.right, y1=w.top)) for w in words
        ],
        font=font,
        size=size,
    )
