"""Plain text: decoding from any common encoding and splitting on blank lines."""

from __future__ import annotations

import codecs
import logging
import re
import unicodedata
from pathlib import Path

import charset_normalizer

from core.models import FailureReason
from tasks.parsers import BlockList, ParseError, ParserOutput

logger = logging.getLogger(__name__)

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# charset-normalizer guesses poorly on short Western text (it calls a latin-1 "Año" big5),
# so cp1252 is tried first and kept when it reads like a Latin-script language: accented
# letters are a minority there, while misread Cyrillic or Greek is almost all "accents".
_MAX_NON_ASCII_LETTER_SHARE = 0.3
_MAX_CONTROL_SHARE = 0.01
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x19\x1b-\x1f\x7f-\x9f\ud800-\udfff]")
_LETTER = re.compile(r"[^\W\d_]")
_SAMPLE_CHARS = 200_000
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\v]*\n")


def parse_text(path: Path) -> ParserOutput:
    """Return one paragraph per blank-line-separated run of lines of a text file."""
    text = decode_text(path.read_bytes())
    if not text.strip():
        raise ParseError(FailureReason.EMPTY, "file contains only whitespace")
    blocks = BlockList()
    for paragraph in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        blocks.add("paragraph", paragraph)
    return ParserOutput(blocks.blocks)


def decode_text(data: bytes) -> str:
    """Return the bytes decoded from their encoding, or raise UNSUPPORTED for binary data."""
    text = _decode(data)
    if text is None or _control_share(text) > _MAX_CONTROL_SHARE:
        raise ParseError(
            FailureReason.UNSUPPORTED, "binary content: not text in any known encoding"
        )
    return unicodedata.normalize("NFC", text)


def _decode(data: bytes) -> str | None:
    """Return the decoded text, or None when no encoding fits."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" not in data:
        western = _decode_western(data)
        if western is not None:
            return western
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        return None
    logger.debug("charset-normalizer chose %s", best.encoding)
    return str(best)


def _decode_western(data: bytes) -> str | None:
    """Return the bytes as cp1252 when that reads like a Latin-script language, else None."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    letters = _LETTER.findall(text[:_SAMPLE_CHARS])
    non_ascii = sum(1 for ch in letters if not ch.isascii())
    return text if non_ascii <= max(_MAX_NON_ASCII_LETTER_SHARE * len(letters), 1) else None


def _control_share(text: str) -> float:
    """Return the share of control characters that never occur in real text."""
    return len(_CONTROLS.findall(text)) / len(text) if text else 0.0
