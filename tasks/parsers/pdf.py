"""PDF: text per page with pypdfium2, regrouped into paragraphs and large-type headings."""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter, deque
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from core.models import FailureReason
from tasks.parsers import BlockList, ParseError, ParserOutput, collapse_spaces
from tasks.parsers.pdf_streams import check_inflated_streams

logger = logging.getLogger(__name__)

# PDFium is not thread-safe, even across documents: every use in a process must hold this lock
# (Dask and Prefect may run tasks in threads).
PDFIUM_LOCK = threading.RLock()

_LINE = re.compile(r"[^\r\n]+")
# PDFium marks a hyphen it removed at a line end with U+FFFE (U+0002 in older builds).
_SOFT_HYPHENS = str.maketrans({"\ufffe": "", "\x02": "", "\u00ad": ""})
_LIGATURES = str.maketrans(
    {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
     "\ufb05": "st", "\ufb06": "st"}
)  # fmt: skip
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd\uffff]")
_PAGE_LABEL = re.compile(r"\d+|\b[ivxlcdm]+\b")
_EDGE_MAX_CHARS = 120
_HYPHEN_END = re.compile(r"[^\W\d_]-$")
_PAGE_NUMBER = re.compile(r"^(?:\d{1,4}|[ivxlcdm]{1,6}|page \d{1,4}(?: of \d{1,4})?)$", re.I)
_SENTENCE_END = (".", "!", "?", ":", "…")
_BULLETS = ("•", "◦", "▪", "●", "○", "■", "□", "‣", "➢", "✓")
_JUNK_TITLES = frozenset({"untitled", "untitled document", "no title", "title"})
_WORD_PRODUCER_PREFIX = re.compile(r"^Microsoft (?:Word|PowerPoint|Excel) - ", re.I)

# Layout thresholds, in multiples of the page's body line height.
_EXTRA_GAP = 0.5
_USUAL_GAP_CAP = 0.8
_SINGLE_SPACING_GAP = 0.3
_MIN_GAPS = 3
_INDENT_MIN, _INDENT_MAX = 0.8, 5.0
_SHORT_LINE = 3.0
_SIZE_CHANGE = 0.15
_HEADING_RATIO = 1.15
_HEADING_MAX_CHARS = 200
_HEADING_MAX_LINES = 3


class _Line(NamedTuple):
    """One text line of a page with its box (PDF points, y upwards)."""

    text: str
    left: float
    right: float
    top: float
    bottom: float
    height: float


def parse_pdf(path: Path, *, max_pages: int) -> ParserOutput:
    """Return paragraph and heading blocks of a PDF, one page at a time, with its title."""
    check_inflated_streams(path)  # before PDFium, which inflates whole streams into memory
    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(path)
        except pdfium.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise ParseError(
                    FailureReason.ENCRYPTED, "PDF is encrypted (password required)"
                ) from exc
            raise ParseError(FailureReason.CORRUPT, f"PDF is not readable: {exc}") from exc
        try:
            return _parse_document(document, max_pages=max_pages)
        finally:
            document.close()


def _parse_document(document: pdfium.PdfDocument, *, max_pages: int) -> ParserOutput:
    """Return the blocks of an open document, checking its page count first."""
    page_count = len(document)
    if page_count == 0:
        raise ParseError(FailureReason.CORRUPT, "PDF has no pages")
    if page_count > max_pages:
        raise ParseError(FailureReason.TOO_LARGE, f"PDF has {page_count} pages (limit {max_pages})")
    blocks = BlockList()
    recent_edges: deque[set[str]] = deque(maxlen=2)
    for number in range(1, page_count + 1):
        try:
            lines = _page_lines(document, number - 1)
        except pdfium.PdfiumError as exc:
            raise ParseError(FailureReason.CORRUPT, f"PDF page {number} is not readable") from exc
        paragraphs = _page_paragraphs(lines)
        edges = {_edge_key(text) for text, _ in paragraphs[:1] + paragraphs[-1:]} - {""}
        seen = set().union(*recent_edges)
        recent_edges.append(edges)
        for index, (text, level) in enumerate(paragraphs):
            # Running headers and footers repeat at the page edges with only numbers changing;
            # headings ("Chapter 2" atop each chapter's page) are never taken for them.
            key = _edge_key(text)
            if not level and key in seen and index in (0, len(paragraphs) - 1):
                continue
            blocks.add("heading" if level else "paragraph", text, level=level, page=number)
    if not blocks.blocks:
        raise ParseError(FailureReason.NO_TEXT, "image-only PDF: no text layer on any page")
    return ParserOutput(blocks.blocks, title=_metadata_title(document), page_count=page_count)


def _page_lines(document: pdfium.PdfDocument, index: int) -> list[_Line]:
    """Return the text lines of one page with their boxes, closing the page afterwards."""
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_range()
            lines = []
            for match in _LINE.finditer(text):
                line = _line(textpage, match.group(), match.start())
                if line is not None:
                    lines.append(line)
            return lines
        finally:
            textpage.close()
    finally:
        page.close()


def _line(textpage: pdfium.PdfTextPage, raw: str, offset: int) -> _Line | None:
    """Return a line with the box spanned by its first and last visible characters."""
    text = collapse_spaces(_CONTROLS.sub("", raw.translate(_SOFT_HYPHENS).translate(_LIGATURES)))
    if not text:
        return None
    stripped = raw.lstrip()
    first = offset + len(raw) - len(stripped)
    last = offset + len(raw.rstrip()) - 1
    first_box = _char_box(textpage, first)
    last_box = _char_box(textpage, last) or first_box
    if first_box is None or last_box is None:
        return _Line(text, 0.0, 0.0, 0.0, 0.0, 0.0)
    return _Line(
        text=text,
        left=first_box[0],
        right=last_box[2],
        top=max(first_box[3], last_box[3]),
        bottom=min(first_box[1], last_box[1]),
        height=first_box[3] - first_box[1],
    )


def _char_box(
    textpage: pdfium.PdfTextPage, text_index: int
) -> tuple[float, float, float, float] | None:
    """Return the loose box of the character at a text offset, or None for generated text."""
    char_index = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage.raw, text_index)
    if char_index < 0:
        return None
    box: tuple[float, float, float, float] = textpage.get_charbox(char_index, loose=True)
    return box


def _page_paragraphs(lines: list[_Line]) -> list[tuple[str, int]]:
    """Return a page's lines grouped into (text, heading level or 0) paragraphs."""
    if not lines:
        return []
    body = _body_height(lines)
    margin_left = Counter(round(line.left) for line in lines).most_common(1)[0][0]
    margin_right = max(line.right for line in lines)
    gaps = sorted(a.bottom - b.top for a, b in pairwise(lines))
    gaps = [gap for gap in gaps if gap > 0]
    # The usual line spacing is the small, frequent gap (capped: some pages hold more paragraph
    # gaps than line gaps); with one or two gaps there is no telling, so assume single spacing.
    if len(gaps) >= _MIN_GAPS:
        usual_gap = min(gaps[len(gaps) // 4], _USUAL_GAP_CAP * body)
    else:
        usual_gap = _SINGLE_SPACING_GAP * body
    paragraphs: list[list[_Line]] = [[lines[0]]]
    for previous, line in pairwise(lines):
        if _breaks(previous, line, body, usual_gap, margin_left, margin_right):
            paragraphs.append([line])
        else:
            paragraphs[-1].append(line)
    result = []
    for paragraph in _drop_page_numbers(paragraphs):
        text = _join_lines([line.text for line in paragraph])
        result.append((text, _heading_level(paragraph, text, body)))
    return result


def _edge_key(text: str) -> str:
    """Return a short text with its page labels masked, to recognise running headers and footers."""
    return _PAGE_LABEL.sub("#", text.lower()) if len(text) <= _EDGE_MAX_CHARS else ""


def _body_height(lines: list[_Line]) -> float:
    """Return the line height carrying most characters on the page (the body text size)."""
    weights: Counter[float] = Counter()
    for line in lines:
        weights[round(line.height * 2) / 2] += len(line.text)
    return weights.most_common(1)[0][0] or 1.0


def _breaks(
    previous: _Line,
    line: _Line,
    body: float,
    usual_gap: float,
    margin_left: float,
    margin_right: float,
) -> bool:
    """Return whether `line` starts a new paragraph after `previous`."""
    if previous.height == 0 or line.height == 0:
        return False
    unit = max(previous.height, line.height, body)
    gap = previous.bottom - line.top
    if gap < -0.5 * unit or line.left > previous.right + unit:
        return True  # moved up or right: a new column or a text box
    if gap > usual_gap + _EXTRA_GAP * unit:
        return True
    if abs(line.height - previous.height) > _SIZE_CHANGE * unit:
        return True
    if line.text.startswith(_BULLETS):
        return True
    if not previous.text.endswith(_SENTENCE_END):
        return False
    at_margin = abs(previous.left - margin_left) < 0.5 * body
    indent = line.left - margin_left
    short = previous.right < margin_right - _SHORT_LINE * body
    return short or (at_margin and _INDENT_MIN * body < indent < _INDENT_MAX * body)


def _drop_page_numbers(paragraphs: list[list[_Line]]) -> list[list[_Line]]:
    """Return the paragraphs without a lone page number at the top or bottom of the page."""

    def is_number(paragraph: list[_Line]) -> bool:
        return len(paragraph) == 1 and _PAGE_NUMBER.match(paragraph[0].text) is not None

    if len(paragraphs) > 1 and is_number(paragraphs[-1]):
        paragraphs = paragraphs[:-1]
    if len(paragraphs) > 1 and is_number(paragraphs[0]):
        paragraphs = paragraphs[1:]
    return paragraphs


def _join_lines(lines: list[str]) -> str:
    """Return wrapped lines joined into one paragraph, re-joining words hyphenated at line ends."""
    text = lines[0]
    for line in lines[1:]:
        if _HYPHEN_END.search(text) and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}"
    return text


def _heading_level(paragraph: list[_Line], text: str, body: float) -> int:
    """Return 1-3 for a short paragraph set clearly larger than the body text, else 0."""
    if len(paragraph) > _HEADING_MAX_LINES or len(text) > _HEADING_MAX_CHARS:
        return 0
    if text.endswith((".", ",", ";")) or not any(ch.isalpha() for ch in text):
        return 0
    ratio = min(line.height for line in paragraph) / body
    if ratio >= 1.6:
        return 1
    if ratio >= 1.3:
        return 2
    return 3 if ratio >= _HEADING_RATIO else 0


def _metadata_title(document: pdfium.PdfDocument) -> str | None:
    """Return the document's metadata title unless it is empty or a placeholder."""
    try:
        title = collapse_spaces(document.get_metadata_value("Title") or "")
    except pdfium.PdfiumError:
        return None
    title = _WORD_PRODUCER_PREFIX.sub("", title)
    return title if title and title.lower() not in _JUNK_TITLES else None
