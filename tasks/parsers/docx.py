"""DOCX: paragraphs, headings by style and table cells, after checking the archive is safe."""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import docx
from docx.document import Document
from docx.styles.style import BaseStyle
from docx.table import Table
from docx.text.paragraph import Paragraph

from core.models import FailureReason
from tasks.parsers import BlockList, ParseError, ParserOutput, collapse_spaces

logger = logging.getLogger(__name__)

MAX_EXPANDED_BYTES = 500 * 1024 * 1024
MAX_EXPANSION_FACTOR = 20
MAX_COMPRESSION_RATIO = 100
# Small XML parts legitimately compress more than 100:1; only big entries are judged by ratio.
_RATIO_CHECK_MIN_BYTES = 1024 * 1024
_HEADING_STYLE = re.compile(r"^(?:heading|t[ií]tulo|encabezado)\s*([1-9])$", re.I)
_TITLE_STYLE = re.compile(r"^(?:title|t[ií]tulo)$", re.I)
_STYLE_DEPTH = 4


def parse_docx(path: Path, *, max_bytes: int) -> ParserOutput:
    """Return heading and paragraph blocks of a DOCX file and its title."""
    check_archive(path, max_expanded=min(MAX_EXPANSION_FACTOR * max_bytes, MAX_EXPANDED_BYTES))
    try:
        document = docx.Document(str(path))
        blocks = BlockList()
        style_title = _add_blocks(document, blocks)
        title = collapse_spaces(document.core_properties.title or "")
    except (OSError, MemoryError):
        raise
    except Exception as exc:
        # python-docx fails on malformed parts in many ways (KeyError, AttributeError, lxml
        # and OPC errors...); all of them mean the same thing here: the file is broken.
        logger.debug("python-docx failed on %s: %r", path, exc)
        raise ParseError(FailureReason.CORRUPT, f"DOCX is not readable: {exc}") from exc
    return ParserOutput(blocks.blocks, title=title or style_title or blocks.first_heading())


def check_archive(path: Path, *, max_expanded: int) -> None:
    """Raise ParseError unless `path` is a readable zip that does not expand out of bounds."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ParseError(FailureReason.CORRUPT, f"not a readable zip archive: {exc}") from exc
    expanded = sum(entry.file_size for entry in entries)
    if expanded > max_expanded:
        raise ParseError(
            FailureReason.TOO_LARGE,
            f"archive expands to {expanded / 2**20:.0f} MiB "
            f"(limit {max_expanded / 2**20:.0f} MiB): possible zip bomb",
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size >= _RATIO_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise ParseError(
                FailureReason.TOO_LARGE,
                f"archive entry {entry.filename!r} has a compression ratio of {ratio:.0f}:1 "
                f"(limit {MAX_COMPRESSION_RATIO}:1): possible zip bomb",
            )


def _add_blocks(document: Document, blocks: BlockList) -> str | None:
    """Append the body's blocks in order; return the text of the first Title-style paragraph."""
    title = None
    for paragraph in _paragraphs(document.iter_inner_content()):
        text = collapse_spaces(paragraph.text)
        kind, level = _paragraph_kind(paragraph.style)
        if kind == "title":
            title = title or text
            blocks.add("heading", text, level=1)
        elif kind == "heading":
            blocks.add("heading", text, level=level)
        else:
            blocks.add("paragraph", text)
    return title


def _paragraphs(content: Iterator[Paragraph | Table]) -> Iterator[Paragraph]:
    """Yield body paragraphs in order, and the paragraphs of each table cell (merged once)."""
    for item in content:
        if isinstance(item, Paragraph):
            yield item
            continue
        seen: set[object] = set()
        for row in item.rows:
            for cell in row.cells:
                if cell._tc in seen:
                    continue
                seen.add(cell._tc)
                yield from _paragraphs(cell.iter_inner_content())


def _paragraph_kind(style: BaseStyle | None) -> tuple[str, int]:
    """Return ("title" | "heading" | "paragraph", level) from a style or its base styles."""
    for _ in range(_STYLE_DEPTH):
        if style is None:
            break
        name = (style.name or "").strip()
        heading = _HEADING_STYLE.match(name)
        if heading is not None:
            return "heading", min(int(heading.group(1)), 6)
        if _TITLE_STYLE.match(name):
            return "title", 1
        style = getattr(style, "base_style", None)
    return "paragraph", 0
