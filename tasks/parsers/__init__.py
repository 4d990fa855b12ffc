"""Per-format parsers: each turns one file into blocks with offsets into the joined text."""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from core.models import Block, FailureReason

BLOCK_SEPARATOR = "\n\n"

_BLANK_LINES = re.compile(r"\n[ \t\f\v]*(?=\n)")
_TRAILING_SPACE = re.compile(r"[ \t\f\v]+\n")
_SPACES = re.compile(r"\s+")


class ParseError(Exception):
    """A permanent problem with the input document; retrying cannot help."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[ParseError], tuple[FailureReason, str]]:
        """Pickle with both arguments so the error survives Dask and Prefect results."""
        return (type(self), (self.reason, self.message))


class ParserOutput(NamedTuple):
    """What a format parser returns: blocks, the title it found, and the page count."""

    blocks: list[Block]
    title: str | None = None
    page_count: int = 1


class BlockList:
    """Collects blocks, giving each its offset in the text they are joined into."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._offset = 0

    def add(
        self,
        kind: Literal["heading", "paragraph"],
        text: str,
        *,
        level: int = 0,
        page: int | None = None,
    ) -> Block | None:
        """Append a block unless its text is blank; return it."""
        text = clean_block_text(text)
        if not text:
            return None
        block = Block(
            kind=kind,
            text=text,
            level=min(max(level, 1), 6) if kind == "heading" else 0,
            page=page,
            start=self._offset,
        )
        self.blocks.append(block)
        self._offset += len(text) + len(BLOCK_SEPARATOR)
        return block

    def first_heading(self) -> str | None:
        """Return the text of the highest-level heading that comes first, if any."""
        headings = [b for b in self.blocks if b.kind == "heading"]
        if not headings:
            return None
        top = min(b.level for b in headings)
        return next(b.text for b in headings if b.level == top)


def clean_block_text(text: str) -> str:
    """Return text without trailing spaces or blank lines, so no block holds a blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _TRAILING_SPACE.sub("\n", text)
    text = _BLANK_LINES.sub("", text)
    return text.strip()


def collapse_spaces(text: str) -> str:
    """Return text with every run of whitespace made a single space."""
    return _SPACES.sub(" ", text).strip()


def join_blocks(blocks: list[Block]) -> str:
    """Return the document text: block texts joined by blank lines."""
    return BLOCK_SEPARATOR.join(b.text for b in blocks)
