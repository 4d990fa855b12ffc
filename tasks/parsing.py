"""Turn an uploaded file into a ParsedDocument, or a ParseError saying why it cannot be."""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

from core.language import detect_language
from core.models import DocumentFormat, FailureReason, ParsedDocument
from tasks.parsers import ParseError, ParserOutput, join_blocks
from tasks.parsers.docx import parse_docx
from tasks.parsers.html import parse_html
from tasks.parsers.markdown import parse_markdown
from tasks.parsers.pdf import parse_pdf
from tasks.parsers.text import decode_text, parse_text

__all__ = ["ParseError", "detect_format", "file_sha256", "parse_document"]

logger = logging.getLogger(__name__)

_HASH_CHUNK = 1024 * 1024
_SNIFF_BYTES = 8192
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_BINARY_MAGICS = {
    b"\x89PNG": "PNG image",
    b"\xff\xd8\xff": "JPEG image",
    b"GIF8": "GIF image",
    b"II*\x00": "TIFF image",
    b"MM\x00*": "TIFF image",
    b"BM": "BMP image",
    b"\x7fELF": "executable",
    b"MZ": "executable",
    b"\xca\xfe\xba\xbe": "executable",
    b"\xcf\xfa\xed\xfe": "executable",
    b"\x1f\x8b": "gzip archive",
    b"BZh": "bzip2 archive",
    b"\xfd7zXZ\x00": "xz archive",
    b"7z\xbc\xaf\x27\x1c": "7z archive",
    b"Rar!": "RAR archive",
    b"\x00asm": "WebAssembly module",
    b"SQLite format 3\x00": "SQLite database",
    b"ID3": "audio file",
    b"OggS": "audio file",
    b"fLaC": "audio file",
    b"%!PS": "PostScript file",
    b"{\\rtf": "RTF document",
}
_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mkdn"})
_HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml", ".shtml"})
_TEXT_SUFFIXES = frozenset(
    {".txt", ".text", ".rst", ".csv", ".tsv", ".log", ".json", ".jsonl", ".yaml", ".yml",
     ".ini", ".cfg", ".conf", ".toml", ".tex", ".org", ".adoc", ".asciidoc", ".srt", ".vtt"}
)  # fmt: skip
_HTML_SNIFF = (b"<!doctype html", b"<html", b"<head", b"<body")


def parse_document(
    path: Path, *, doc_id: str, source: str, max_bytes: int, max_pages: int
) -> ParsedDocument:
    """Return the document at `path` parsed into text and blocks, or raise ParseError."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ParseError(FailureReason.NOT_FOUND, f"file not found: {path.name}") from exc
    if size == 0:
        raise ParseError(FailureReason.EMPTY, "file is empty (0 bytes)")
    if size > max_bytes:
        raise ParseError(
            FailureReason.TOO_LARGE,
            f"file is {size / 2**20:.1f} MiB (limit {max_bytes / 2**20:.1f} MiB)",
        )
    document_format = detect_format(path)
    output = _parse(path, document_format, max_bytes=max_bytes, max_pages=max_pages)
    if not output.blocks:
        raise ParseError(FailureReason.NO_TEXT, f"no extractable text in {document_format} file")
    text = join_blocks(output.blocks)
    logger.debug("parsed %s: %s, %d blocks", source, document_format, len(output.blocks))
    return ParsedDocument(
        doc_id=doc_id,
        source=source,
        format=document_format,
        content_hash=file_sha256(path),
        title=output.title or path.stem,
        language=detect_language(text),
        page_count=output.page_count,
        text=text,
        blocks=output.blocks,
    )


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def detect_format(path: Path) -> DocumentFormat:
    """Return the file's format from its magic bytes, then its extension, then its content."""
    with path.open("rb") as stream:
        head = stream.read(_SNIFF_BYTES)
    suffix = path.suffix.lower()
    if b"%PDF-" in head[:1024]:
        return DocumentFormat.PDF
    if head.startswith(_ZIP_MAGICS):
        return _zip_format(path)
    if head.startswith(_OLE2_MAGIC):
        if _ENCRYPTED_PACKAGE in path.read_bytes():
            raise ParseError(FailureReason.ENCRYPTED, "DOCX is encrypted (password required)")
        raise ParseError(
            FailureReason.UNSUPPORTED, "legacy Office file (.doc/.xls/.ppt) is not supported"
        )
    for magic, kind in _BINARY_MAGICS.items():
        if head.startswith(magic):
            raise ParseError(FailureReason.UNSUPPORTED, f"unsupported file type: {kind}")
    if suffix == ".pdf":
        raise ParseError(FailureReason.CORRUPT, "file named .pdf has no PDF header")
    if suffix == ".docx":
        raise ParseError(FailureReason.CORRUPT, "file named .docx is not a zip archive")
    if suffix in _MARKDOWN_SUFFIXES:
        return DocumentFormat.MARKDOWN
    if suffix in _HTML_SUFFIXES:
        return DocumentFormat.HTML
    return _sniff_text(head, known_text=suffix in _TEXT_SUFFIXES)


def _zip_format(path: Path) -> DocumentFormat:
    """Return DOCX for a Word archive; raise for any other or unreadable zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise ParseError(FailureReason.CORRUPT, f"not a readable zip archive: {exc}") from exc
    if "word/document.xml" in names:
        return DocumentFormat.DOCX
    raise ParseError(FailureReason.UNSUPPORTED, "zip archive that is not a DOCX document")


def _sniff_text(head: bytes, *, known_text: bool) -> DocumentFormat:
    """Return HTML or TEXT for a file whose first bytes decode as text; raise for binary."""
    # The sniffed prefix may end inside a multi-byte character; drop up to 3 trailing bytes.
    for cut in range(4):
        try:
            sample = decode_text(head[: len(head) - cut] if cut else head)
            break
        except ParseError:
            if cut == 3:
                raise
    if not known_text and sample.lstrip("\ufeff \t\r\n").lower().encode().startswith(_HTML_SNIFF):
        return DocumentFormat.HTML
    return DocumentFormat.TEXT


def _parse(
    path: Path, document_format: DocumentFormat, *, max_bytes: int, max_pages: int
) -> ParserOutput:
    """Return the output of the parser for `document_format`."""
    if document_format is DocumentFormat.PDF:
        return parse_pdf(path, max_pages=max_pages)
    if document_format is DocumentFormat.DOCX:
        return parse_docx(path, max_bytes=max_bytes)
    if document_format is DocumentFormat.HTML:
        return parse_html(path)
    if document_format is DocumentFormat.MARKDOWN:
        return parse_markdown(path)
    return parse_text(path)
