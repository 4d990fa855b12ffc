"""Real test documents built on the fly: PDFs (reportlab), DOCX (python-docx), archives, text."""

from __future__ import annotations

import random
import zipfile
from collections.abc import Sequence
from pathlib import Path

import docx
from docx.enum.style import WD_STYLE_TYPE
from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfgen.canvas import Canvas

DATA_DIR = Path(__file__).parent / "data"

_MARGIN = 72.0
_BODY_SIZE = 11.0
_LEADING = 14.0
_PARAGRAPH_GAP = 10.0
_HEADING_SIZES = {1: 22.0, 2: 17.0, 3: 14.0}

DocxBlock = tuple[str, str | list[list[str]]]


def make_pdf(
    path: Path,
    pages: Sequence[Sequence[str] | str],
    *,
    title: str | None = None,
    encrypt_password: str | None = None,
    page_numbers: bool = False,
    header: str | None = None,
) -> Path:
    """Write a text PDF, one entry per page: a paragraph or a list ("# " marks a heading)."""
    # A paragraph starting with "# ", "## " or "### " is drawn in larger bold type; `header` is
    # a running header atop every page, with "{page}" replaced by the page number.
    encrypt = StandardEncryption(encrypt_password) if encrypt_password is not None else None
    canvas = Canvas(str(path), pagesize=A4, encrypt=encrypt)
    if title is not None:
        canvas.setTitle(title)
    width, height = A4
    for number, page in enumerate(pages, start=1):
        if header is not None:
            canvas.setFont("Helvetica", 9)
            canvas.drawString(_MARGIN, height - 40, header.format(page=number))
        y = height - _MARGIN
        for paragraph in [page] if isinstance(page, str) else page:
            level = len(paragraph) - len(paragraph.lstrip("#"))
            font, size = (
                ("Helvetica-Bold", _HEADING_SIZES[level]) if level else ("Helvetica", _BODY_SIZE)
            )
            text = paragraph[level:].strip()
            canvas.setFont(font, size)
            for line in simpleSplit(text, font, size, width - 2 * _MARGIN):
                canvas.drawString(_MARGIN, y, line)
                y -= max(_LEADING, size * 1.25)
            y -= _PARAGRAPH_GAP
        if page_numbers:
            canvas.setFont("Helvetica", 9)
            canvas.drawCentredString(width / 2, 36, str(number))
        canvas.showPage()
    canvas.save()
    return path


def make_image_only_pdf(path: Path, pages: int = 1) -> Path:
    """Write a PDF whose pages hold only a picture (like a scan), with no text layer."""
    rng = random.Random(7)
    canvas = Canvas(str(path), pagesize=A4)
    for _ in range(pages):
        image = Image.new("L", (200, 280), 255)
        for _ in range(3000):
            image.putpixel((rng.randrange(200), rng.randrange(280)), rng.randrange(0, 120))
        canvas.drawImage(ImageReader(image), 72, 200, width=400, height=560)
        canvas.showPage()
    canvas.save()
    return path


def make_corrupt_pdf(path: Path) -> Path:
    """Write a file with a PDF header followed by garbage."""
    rng = random.Random(11)
    path.write_bytes(b"%PDF-1.7\n" + bytes(rng.randrange(256) for _ in range(4096)))
    return path


def make_truncated_pdf(path: Path, source: Path, keep: float = 0.3) -> Path:
    """Write the first `keep` share of a real PDF's bytes."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_docx(path: Path, blocks: Sequence[DocxBlock], *, title: str | None = None) -> Path:
    """Write a DOCX from (style, text) pairs, or ("table", rows); missing styles are created."""
    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    for style, content in blocks:
        if style == "table":
            assert isinstance(content, list)
            table = document.add_table(rows=len(content), cols=len(content[0]))
            for row, values in zip(table.rows, content, strict=True):
                for cell, value in zip(row.cells, values, strict=True):
                    cell.text = value
            continue
        assert isinstance(content, str)
        if style not in [s.name for s in document.styles]:
            document.styles.add_style(style, WD_STYLE_TYPE.PARAGRAPH)
        document.add_paragraph(content, style=style)
    document.save(str(path))
    return path


def make_zip_bomb(path: Path, *, uncompressed_mb: int = 200) -> Path:
    """Write a DOCX-looking zip whose one entry of zeros expands to `uncompressed_mb` MiB."""
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr("word/document.xml", '<?xml version="1.0"?><document/>')
        with archive.open("word/media/zeros.bin", "w", force_zip64=True) as entry:
            for _ in range(uncompressed_mb):
                entry.write(chunk)
    return path


def make_zip(path: Path, files: dict[str, str]) -> Path:
    """Write a plain zip archive holding the given text files."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return path


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write text in the given encoding ("utf-8-sig" and "utf-16" add a byte-order mark)."""
    path.write_bytes(text.encode(encoding))
    return path
