"""HTML: headings and text blocks in document order, without scripts, styles or navigation."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser, LexborNode

from tasks.parsers import BlockList, ParserOutput, collapse_spaces
from tasks.parsers.text import decode_text

_SKIPPED = frozenset(
    {"script", "style", "nav", "head", "noscript", "template", "svg", "math", "iframe",
     "object", "canvas", "select", "-comment"}
)  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
# Elements that end the running paragraph; everything else (a, b, span, code...) is inline.
_BLOCKS = frozenset(
    {"html", "body", "p", "li", "pre", "td", "th", "blockquote", "dt", "dd", "dl", "caption",
     "figcaption", "figure", "div", "section", "article", "main", "header", "footer", "aside",
     "ul", "ol", "menu", "table", "thead", "tbody", "tfoot", "tr", "form", "fieldset", "legend",
     "address", "details", "summary", "hr", "center", "hgroup", "option", "textarea"}
)  # fmt: skip
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
# WHATWG: documents labelled latin-1 or ascii are decoded as windows-1252.
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252"}


def parse_html(path: Path) -> ParserOutput:
    """Return heading and paragraph blocks of an HTML file and its <title> (or first h1)."""
    tree = LexborHTMLParser(decode_html(path.read_bytes()))
    title_node = tree.css_first("title")
    title = collapse_spaces(title_node.text()) if title_node is not None else ""
    blocks = BlockList()
    add_html_blocks(tree, blocks)
    return ParserOutput(blocks.blocks, title=title or blocks.first_heading())


def decode_html(data: bytes) -> str:
    """Return the HTML decoded with its declared charset, or a detected one."""
    declared = _META_CHARSET.search(data[:4096])
    if declared is not None and not data.startswith((codecs.BOM_UTF8, b"\xff\xfe", b"\xfe\xff")):
        name = declared.group(1).decode("ascii").lower()
        try:
            return data.decode(_CHARSET_ALIASES.get(name, name))
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong or unknown label is common; fall back to detection
    return decode_text(data)


def add_html_blocks(tree: LexborHTMLParser, blocks: BlockList) -> None:
    """Append the blocks of a parsed HTML tree to `blocks`, in document order."""
    start = tree.body if tree.body is not None else tree.root
    if start is None:
        return
    buffer: list[str] = []
    heading_levels: list[int] = []
    pre_depth = 0

    def flush() -> None:
        text = "".join(buffer)
        buffer.clear()
        if heading_levels:
            blocks.add("heading", collapse_spaces(text), level=heading_levels[-1])
        else:
            blocks.add("paragraph", text if pre_depth else collapse_spaces(text))

    # An explicit stack, not recursion: real pages nest deeper than Python's recursion limit.
    stack: list[tuple[LexborNode, bool]] = [(start, False)]
    while stack:
        node, leaving = stack.pop()
        tag = node.tag or ""
        if leaving:
            flush()
            if tag in _HEADINGS:
                heading_levels.pop()
            elif tag == "pre":
                pre_depth -= 1
            continue
        if tag == "-text":
            buffer.append(node.text_content or "")
            continue
        if tag in _SKIPPED:
            continue
        if tag == "br":
            buffer.append("\n" if pre_depth else " ")
            continue
        if tag in _BLOCKS or tag in _HEADINGS:
            flush()
            if tag in _HEADINGS:
                heading_levels.append(_HEADINGS[tag])
            elif tag == "pre":
                pre_depth += 1
            stack.append((node, True))
        stack.extend((child, False) for child in reversed(list(node.iter(include_text=True))))
    flush()
