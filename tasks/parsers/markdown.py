"""Markdown: headings, paragraphs, list items, code and table rows as plain text."""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from selectolax.lexbor import LexborHTMLParser

from tasks.parsers import BlockList, ParserOutput, collapse_spaces
from tasks.parsers.html import add_html_blocks
from tasks.parsers.text import decode_text

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_FRONT_MATTER_TITLE = re.compile(r"""^title:[ \t]*["']?(.*?)["']?[ \t]*$""", re.M)
_INLINE_TEXT = frozenset({"text", "text_special", "code_inline", "image"})


def parse_markdown(path: Path) -> ParserOutput:
    """Return heading and paragraph blocks of a Markdown file and its title."""
    source = decode_text(path.read_bytes()).replace("\r\n", "\n").replace("\r", "\n")
    title = None
    front_matter = _FRONT_MATTER.match(source)
    if front_matter is not None:
        source = source[front_matter.end() :]
        declared = _FRONT_MATTER_TITLE.search(front_matter.group(1))
        title = declared.group(1).strip() if declared is not None else None
    blocks = BlockList()
    _add_token_blocks(MarkdownIt("commonmark").enable("table").parse(source), blocks)
    return ParserOutput(blocks.blocks, title=title or blocks.first_heading())


def _add_token_blocks(tokens: list[Token], blocks: BlockList) -> None:
    """Append one block per heading, paragraph, code block and table row."""
    heading_level = 0
    row: list[str] | None = None
    for token in tokens:
        if token.type == "heading_open":
            heading_level = int(token.tag[1:])
        elif token.type == "heading_close":
            heading_level = 0
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            blocks.add("paragraph", " | ".join(cell for cell in row if cell))
            row = None
        elif token.type == "inline":
            text = _inline_text(token)
            if row is not None:
                row.append(text)
            elif heading_level:
                blocks.add("heading", text, level=heading_level)
            else:
                blocks.add("paragraph", text)
        elif token.type in ("fence", "code_block"):
            blocks.add("paragraph", token.content)
        elif token.type == "html_block":
            add_html_blocks(LexborHTMLParser(token.content), blocks)


def _inline_text(token: Token) -> str:
    """Return the plain text of an inline token: markup dropped, image alt text kept."""
    parts = [
        child.content if child.type in _INLINE_TEXT else " "
        for child in token.children or []
        if child.type in _INLINE_TEXT or child.type in ("softbreak", "hardbreak")
    ]
    return collapse_spaces("".join(parts))
