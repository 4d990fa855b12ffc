"""Document parsing: every format on real generated files, and every bad input's reason."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from core.models import DocumentFormat, FailureReason, ParsedDocument
from tasks.parsing import ParseError, detect_format, file_sha256, parse_document
from tests.docgen import (
    DATA_DIR,
    make_corrupt_pdf,
    make_docx,
    make_image_only_pdf,
    make_pdf,
    make_truncated_pdf,
    make_zip,
    make_zip_bomb,
    write_text,
)

MAX_BYTES = 50 * 2**20
MAX_PAGES = 100

EN_1 = (
    "The network configuration of every server lives in a single file. Edit it with care, "
    "then restart the networking service so that the new addresses take effect."
)
EN_2 = "Routing tables decide where each packet goes next on its way to the destination."
ES_1 = (
    "La configuración de la red de cada servidor está en un único archivo. Edítelo con "
    "cuidado y reinicie el servicio de red para que las nuevas direcciones tengan efecto."
)
ES_2 = "¿Dónde está la información? En el año pasado, el niño comió piña en España."

Factory = Callable[[Path], Path]


def _parse(path: Path, *, max_bytes: int = MAX_BYTES, max_pages: int = MAX_PAGES) -> ParsedDocument:
    """Parse a file with the test limits."""
    return parse_document(
        path, doc_id="doc-1", source=path.name, max_bytes=max_bytes, max_pages=max_pages
    )


def _reason(path: Path, **limits: int) -> ParseError:
    """Return the ParseError that parsing `path` raises."""
    with pytest.raises(ParseError) as caught:
        _parse(path, **limits)
    return caught.value


def _pdf(tmp: Path) -> Path:
    return make_pdf(
        tmp / "guide.pdf",
        [["# Network guide", EN_1, EN_2], ["## Routing", EN_2, EN_1]],
        title="Network Guide",
    )


def _pdf_es(tmp: Path) -> Path:
    return make_pdf(tmp / "guia.pdf", [["# Guía de red", ES_1, ES_2]])


def _docx(tmp: Path) -> Path:
    return make_docx(
        tmp / "manual.docx",
        [
            ("Title", "Operations manual"),
            ("Heading 1", "Network"),
            ("Normal", EN_1),
            ("Heading 2", "Routing"),
            ("Normal", EN_2),
            ("table", [["Host", "Address"], ["gateway", "10.0.0.1"]]),
        ],
    )


def _docx_es(tmp: Path) -> Path:
    return make_docx(
        tmp / "manual-es.docx",
        [("Título 1", "Configuración"), ("Normal", ES_1), ("Título 2", "Red"), ("Normal", ES_2)],
        title="Manual de operaciones",
    )


def _html(tmp: Path) -> Path:
    return write_text(
        tmp / "page.html",
        "<!doctype html><html><head><title>Network page</title>"
        "<style>p { color: red }</style><script>var secret = 1;</script></head>"
        "<body><nav><a href='/'>Home</a> <a href='/x'>Menu item</a></nav>"
        f"<h1>Network</h1><p>{EN_1}</p><h3>Routing</h3><ul><li>{EN_2}</li></ul>"
        "<script>document.write('hidden')</script></body></html>",
    )


def _markdown(tmp: Path) -> Path:
    return write_text(
        tmp / "notes.md",
        f"# Network\n\n{EN_1}\n\nRouting\n-------\n\n- {EN_2}\n\n```\nip route show\n```\n",
    )


def _text(tmp: Path) -> Path:
    return write_text(tmp / "notas.txt", f"{ES_1}\n\n{ES_2}\n", encoding="latin-1")


def _real_pdf(tmp: Path) -> Path:
    return DATA_DIR / "pdflatex-outline.pdf"


GOOD_DOCUMENTS = [
    # format, title, language, pages, headings (level, text)
    pytest.param(
        _pdf, DocumentFormat.PDF, "Network Guide", "en", 2,
        [(1, "Network guide"), (2, "Routing")], id="pdf-two-pages-metadata-title",
    ),
    pytest.param(
        _pdf_es, DocumentFormat.PDF, "guia", "es", 1, [(1, "Guía de red")],
        id="pdf-spanish-no-metadata-title-uses-stem",
    ),
    pytest.param(
        _docx, DocumentFormat.DOCX, "Operations manual", "en", 1,
        [(1, "Operations manual"), (1, "Network"), (2, "Routing")], id="docx-title-style",
    ),
    pytest.param(
        _docx_es, DocumentFormat.DOCX, "Manual de operaciones", "es", 1,
        [(1, "Configuración"), (2, "Red")], id="docx-spanish-styles-core-title",
    ),
    pytest.param(
        _html, DocumentFormat.HTML, "Network page", "en", 1, [(1, "Network"), (3, "Routing")],
        id="html-title-element",
    ),
    pytest.param(
        _markdown, DocumentFormat.MARKDOWN, "Network", "en", 1,
        [(1, "Network"), (2, "Routing")], id="markdown-atx-and-setext",
    ),
    pytest.param(
        _text, DocumentFormat.TEXT, "notas", "es", 1, [], id="text-latin-1-spanish",
    ),
    pytest.param(
        _real_pdf, DocumentFormat.PDF, "pdflatex-outline", "en", 4,
        [(2, "Contents"), (2, "1 Foo"), (2, "2 Bar"), (2, "3 Baz"), (2, "4 Foo"), (2, "5 Bar"),
         (2, "6 Baz"), (2, "7 Foo"), (2, "8 Bar"), (2, "9 Baz")],
        id="real-pdflatex-pdf",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("factory", "document_format", "title", "language", "pages", "headings"), GOOD_DOCUMENTS
)
def test_parse_document_good_inputs(
    tmp_path: Path,
    factory: Factory,
    document_format: DocumentFormat,
    title: str,
    language: str,
    pages: int,
    headings: list[tuple[int, str]],
) -> None:
    path = factory(tmp_path)
    document = _parse(path)
    assert document.format is document_format
    assert document.title == title
    assert document.language == language
    assert document.page_count == pages
    assert [(b.level, b.text) for b in document.blocks if b.kind == "heading"] == headings
    assert document.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (document.doc_id, document.source) == ("doc-1", path.name)


@pytest.mark.parametrize(
    "factory",
    [
        _pdf,  # generated PDF, two pages
        _real_pdf,  # pdfTeX PDF with real layout
        _docx,  # headings, paragraphs and a table
        _html,  # nested lists and dropped elements
        _markdown,  # code block keeps its newline structure
        _text,  # latin-1 plain text
    ],
)
def test_parse_document_block_offsets_point_into_text(tmp_path: Path, factory: Factory) -> None:
    document = _parse(factory(tmp_path))
    assert document.blocks
    assert document.text == "\n\n".join(b.text for b in document.blocks)
    for block in document.blocks:
        assert document.text[block.start : block.start + len(block.text)] == block.text
        assert "\n\n" not in block.text


def _empty(tmp: Path) -> Path:
    return write_text(tmp / "empty.txt", "")


def _blank(tmp: Path) -> Path:
    return write_text(tmp / "blank.txt", "  \n\n\t \n")


def _image_pdf(tmp: Path) -> Path:
    return make_image_only_pdf(tmp / "scan.pdf", pages=2)


def _encrypted_pdf(tmp: Path) -> Path:
    return make_pdf(tmp / "secret.pdf", [EN_1], encrypt_password="s3cret")


def _real_encrypted_pdf(tmp: Path) -> Path:
    return DATA_DIR / "libreoffice-writer-password.pdf"


def _garbage_pdf(tmp: Path) -> Path:
    return make_corrupt_pdf(tmp / "garbage.pdf")


def _truncated_pdf(tmp: Path) -> Path:
    return make_truncated_pdf(tmp / "cut.pdf", _pdf(tmp), keep=0.5)


def _pdf_without_header(tmp: Path) -> Path:
    return write_text(tmp / "fake.pdf", "this is not a pdf at all")


def _docx_not_zip(tmp: Path) -> Path:
    return write_text(tmp / "fake.docx", "plain words pretending to be a document")


def _broken_zip(tmp: Path) -> Path:
    (tmp / "broken.docx").write_bytes(b"PK\x03\x04" + bytes(200))
    return tmp / "broken.docx"


def _docx_bad_xml(tmp: Path) -> Path:
    return make_zip(tmp / "bad.docx", {"[Content_Types].xml": "<Types/>", "word/document.xml": "<"})


def _zip_bomb(tmp: Path) -> Path:
    return make_zip_bomb(tmp / "bomb.docx", uncompressed_mb=200)


def _plain_zip(tmp: Path) -> Path:
    return make_zip(tmp / "archive.zip", {"readme.txt": EN_1})


def _odt_like_zip(tmp: Path) -> Path:
    return make_zip(tmp / "letter.docx", {"content.xml": "<office/>"})


def _png(tmp: Path) -> Path:
    (tmp / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    return tmp / "logo.png"


def _elf(tmp: Path) -> Path:
    (tmp / "tool").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(300))
    return tmp / "tool"


def _binary_txt(tmp: Path) -> Path:
    (tmp / "data.txt").write_bytes(bytes(range(256)) * 8)
    return tmp / "data.txt"


def _encrypted_office(tmp: Path) -> Path:
    # The shape of an encrypted OOXML file: a CFB container holding an EncryptedPackage stream.
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    directory = "EncryptedPackage".encode("utf-16-le") + bytes(96)
    (tmp / "locked.docx").write_bytes(header + directory)
    return tmp / "locked.docx"


def _legacy_doc(tmp: Path) -> Path:
    (tmp / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024))
    return tmp / "old.doc"


def _script_only_html(tmp: Path) -> Path:
    return write_text(tmp / "app.html", "<html><body><script>run()</script><nav>x</nav></body>")


def _missing(tmp: Path) -> Path:
    return tmp / "nowhere.pdf"


BAD_INPUTS = [
    # factory, reason, message fragment
    pytest.param(_empty, FailureReason.EMPTY, "file is empty", id="zero-bytes"),
    pytest.param(_blank, FailureReason.EMPTY, "only whitespace", id="whitespace-only-text"),
    pytest.param(
        _image_pdf, FailureReason.NO_TEXT, "image-only PDF: no text layer on any page",
        id="image-only-pdf",
    ),
    pytest.param(
        _encrypted_pdf, FailureReason.ENCRYPTED, "PDF is encrypted (password required)",
        id="encrypted-pdf-reportlab",
    ),
    pytest.param(
        _real_encrypted_pdf, FailureReason.ENCRYPTED, "PDF is encrypted (password required)",
        id="encrypted-pdf-libreoffice",
    ),
    pytest.param(_garbage_pdf, FailureReason.CORRUPT, "PDF is not readable", id="pdf-garbage"),
    pytest.param(_truncated_pdf, FailureReason.CORRUPT, "PDF is not readable", id="pdf-cut"),
    pytest.param(
        _pdf_without_header, FailureReason.CORRUPT, "has no PDF header", id="pdf-name-only",
    ),
    pytest.param(_docx_not_zip, FailureReason.CORRUPT, "not a zip", id="docx-name-only"),
    pytest.param(_broken_zip, FailureReason.CORRUPT, "not a readable zip", id="docx-bad-zip"),
    pytest.param(_docx_bad_xml, FailureReason.CORRUPT, "DOCX is not readable", id="docx-bad-xml"),
    pytest.param(_zip_bomb, FailureReason.TOO_LARGE, "possible zip bomb", id="docx-zip-bomb"),
    pytest.param(_plain_zip, FailureReason.UNSUPPORTED, "not a DOCX", id="zip-not-docx"),
    pytest.param(_odt_like_zip, FailureReason.UNSUPPORTED, "not a DOCX", id="docx-name-odt"),
    pytest.param(_png, FailureReason.UNSUPPORTED, "PNG image", id="png"),
    pytest.param(_elf, FailureReason.UNSUPPORTED, "executable", id="elf-no-extension"),
    pytest.param(_binary_txt, FailureReason.UNSUPPORTED, "binary content", id="binary-as-txt"),
    pytest.param(
        _encrypted_office, FailureReason.ENCRYPTED, "DOCX is encrypted", id="docx-encrypted"
    ),
    pytest.param(_legacy_doc, FailureReason.UNSUPPORTED, "legacy Office", id="legacy-doc"),
    pytest.param(
        _script_only_html, FailureReason.NO_TEXT, "no extractable text", id="html-no-text"
    ),
    pytest.param(_missing, FailureReason.NOT_FOUND, "file not found", id="missing-file"),
]  # fmt: skip


@pytest.mark.parametrize(("factory", "reason", "message"), BAD_INPUTS)
def test_parse_document_bad_inputs(
    tmp_path: Path, factory: Factory, reason: FailureReason, message: str
) -> None:
    error = _reason(factory(tmp_path))
    assert error.reason is reason
    assert message in str(error)


def test_parse_document_too_large_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as stream:
        stream.truncate(4 * 2**30)  # sparse: costs no disk, and would take long to read
    error = _reason(path, max_bytes=2**20)
    assert error.reason is FailureReason.TOO_LARGE
    assert str(error) == "file is 4096.0 MiB (limit 1.0 MiB)"


def test_parse_document_too_many_pages(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "long.pdf", [f"Page {n} text." for n in range(1, 7)])
    error = _reason(path, max_pages=5)
    assert error.reason is FailureReason.TOO_LARGE
    assert str(error) == "PDF has 6 pages (limit 5)"


def test_parse_document_zip_bomb_total_size(tmp_path: Path) -> None:
    # 30 MiB expanded against a limit of 20 x 1 MiB: caught by the total, before any ratio.
    error = _reason(make_zip_bomb(tmp_path / "bomb.docx", uncompressed_mb=30), max_bytes=2**20)
    assert error.reason is FailureReason.TOO_LARGE
    assert "archive expands to 30 MiB (limit 20 MiB)" in str(error)


def test_parse_error_pickles_with_reason_and_message() -> None:
    error = ParseError(FailureReason.ENCRYPTED, "PDF is encrypted (password required)")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.reason is FailureReason.ENCRYPTED
    assert str(copy) == "PDF is encrypted (password required)"


def test_parse_pdf_pages_and_wrapped_lines(tmp_path: Path) -> None:
    long_paragraph = " ".join([EN_1, EN_2, EN_1])  # wraps over several lines
    path = make_pdf(tmp_path / "wrap.pdf", [[long_paragraph, EN_2], ["# Last", EN_1]])
    document = _parse(path)
    assert [(b.page, b.kind, b.text) for b in document.blocks] == [
        (1, "paragraph", long_paragraph),
        (1, "paragraph", EN_2),
        (2, "heading", "Last"),
        (2, "paragraph", EN_1),
    ]


def test_parse_pdf_dehyphenates_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "hyphen.pdf"
    canvas = Canvas(str(path), pagesize=A4)
    canvas.setFont("Helvetica", 11)
    for y, line in [(700, "El sistema guarda la informa-"), (686, "ción de cada equipo en una"),
                    (672, "base de datos centraliza-"), (658, "da y replicada.")]:  # fmt: skip
        canvas.drawString(72, y, line)
    canvas.save()
    document = _parse(path)
    assert [b.text for b in document.blocks] == [
        "El sistema guarda la información de cada equipo en una base de datos centralizada y "
        "replicada."
    ]


def test_parse_pdf_drops_page_numbers_and_running_headers(tmp_path: Path) -> None:
    path = make_pdf(
        tmp_path / "numbered.pdf",
        [[EN_1], [EN_2], [EN_1]],
        page_numbers=True,
        header="Company handbook {page} / 3",
    )
    texts = [b.text for b in _parse(path).blocks]
    # The first header stays (nothing to compare it with); later ones and all numbers go.
    assert texts == ["Company handbook 1 / 3", EN_1, EN_2, EN_1]


def test_parse_pdf_real_file_text_on_expected_pages(tmp_path: Path) -> None:
    document = _parse(DATA_DIR / "pdflatex-outline.pdf")
    pages = {b.page for b in document.blocks}
    assert pages == {1, 2, 3, 4}
    first_body = next(b for b in document.blocks if b.page == 2 and b.kind == "paragraph")
    assert first_body.text.startswith("Hello, here is some text without a meaning.")
    assert "Huardest gefburn" in first_body.text
    assert "2" not in [b.text for b in document.blocks]  # page numbers dropped


def test_parse_docx_table_cells_in_order(tmp_path: Path) -> None:
    texts = [b.text for b in _parse(_docx(tmp_path)).blocks]
    assert texts[-4:] == ["Host", "Address", "gateway", "10.0.0.1"]


def test_parse_docx_core_title_wins_over_title_style(tmp_path: Path) -> None:
    path = make_docx(
        tmp_path / "t.docx", [("Title", "Style title"), ("Normal", EN_1)], title="Core"
    )
    assert _parse(path).title == "Core"


def test_parse_html_drops_script_style_nav(tmp_path: Path) -> None:
    document = _parse(_html(tmp_path))
    assert [b.text for b in document.blocks] == ["Network", EN_1, "Routing", EN_2]
    for hidden in ("secret", "color", "Menu item", "hidden"):
        assert hidden not in document.text


def test_parse_html_meta_charset_latin1(tmp_path: Path) -> None:
    path = tmp_path / "old.htm"
    markup = f'<html><head><meta charset="iso-8859-1"></head><body><h2>Año</h2><p>{ES_2}</p>'
    path.write_bytes(markup.encode("latin-1"))
    document = _parse(path)
    assert [(b.kind, b.level, b.text) for b in document.blocks] == [
        ("heading", 2, "Año"),
        ("paragraph", 0, ES_2),
    ]
    assert document.title == "Año"  # no <title>, no h1: the first heading


def test_parse_html_inline_markup_pre_and_cells(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "mix.html",
        "<body><p>Hel<b>lo</b> <a href='#'>wor</a>ld<br>again</p>"
        "<pre>ip addr\n  show dev eth0</pre>"
        "<table><tr><td>cell <em>one</em></td><td><p>cell two</p></td></tr></table>"
        "<blockquote>quoted</blockquote><dl><dt>term</dt><dd>definition</dd></dl></body>",
    )
    assert [b.text for b in _parse(path).blocks] == [
        "Hello world again",
        "ip addr\n  show dev eth0",
        "cell one",
        "cell two",
        "quoted",
        "term",
        "definition",
    ]


def test_parse_html_deep_nesting(tmp_path: Path) -> None:
    path = write_text(tmp_path / "deep.html", "<div>" * 5000 + "deep text" + "</div>" * 5000)
    assert [b.text for b in _parse(path).blocks] == ["deep text"]


def test_parse_markdown_strips_markup(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "doc.markdown",
        "---\ntitle: Front matter title\n---\n\n"
        "# Heading with *emphasis*\n\n"
        "Text with **bold**, [a link](http://example.com) and `code`.\n\n"
        "1. first item\n2. second item\n\n"
        "| Name | Port |\n|------|------|\n| ssh  | 22   |\n\n"
        "    indented code\n\n"
        "<div><p>raw html</p></div>\n",
    )
    document = _parse(path)
    assert document.title == "Front matter title"
    assert [(b.kind, b.text) for b in document.blocks] == [
        ("heading", "Heading with emphasis"),
        ("paragraph", "Text with bold, a link and code."),
        ("paragraph", "first item"),
        ("paragraph", "second item"),
        ("paragraph", "Name | Port"),
        ("paragraph", "ssh | 22"),
        ("paragraph", "indented code"),
        ("paragraph", "raw html"),
    ]


@pytest.mark.parametrize(
    "encoding",
    [
        "utf-8",  # the common case
        "utf-8-sig",  # with a byte-order mark (Windows editors)
        "utf-16",  # with a byte-order mark
        "latin-1",  # legacy Western European
        "cp1252",  # Windows Western European
    ],
)
def test_parse_text_encodings(tmp_path: Path, encoding: str) -> None:
    path = write_text(tmp_path / "notes.txt", f"{ES_2}\n\nSegundo párrafo.\r\n", encoding)
    document = _parse(path)
    assert [b.text for b in document.blocks] == [ES_2, "Segundo párrafo."]
    assert document.language == "es"


def test_parse_text_short_latin1_word(tmp_path: Path) -> None:
    # Three bytes: too little for statistics, which would call this big5.
    path = write_text(tmp_path / "word.txt", "Año", encoding="latin-1")
    assert _parse(path).text == "Año"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("report.pdf", b"%PDF-1.4\n...", DocumentFormat.PDF),  # magic and name agree
        ("report.bin", b"%PDF-1.4\n...", DocumentFormat.PDF),  # magic wins over the name
        ("junk-then.pdf", b"\r\n" * 10 + b"%PDF-1.7\n", DocumentFormat.PDF),  # late header
        ("README.md", b"# Title\n", DocumentFormat.MARKDOWN),  # by extension
        ("notes.markdown", b"text", DocumentFormat.MARKDOWN),  # long extension
        ("index.HTM", b"<p>x</p>", DocumentFormat.HTML),  # extension, any case
        ("page", b"  <!DOCTYPE html><html>", DocumentFormat.HTML),  # sniffed, no extension
        ("data.csv", b"a,b\n1,2\n", DocumentFormat.TEXT),  # text family extension
        ("guide.rst", b"Title\n=====\n", DocumentFormat.TEXT),  # reStructuredText as text
        ("LICENSE", b"Permission is hereby granted", DocumentFormat.TEXT),  # sniffed text
        ("snippet.txt", b"<html>as text</html>", DocumentFormat.TEXT),  # .txt is not sniffed
    ],
)
def test_detect_format_cases(
    tmp_path: Path, name: str, content: bytes, expected: DocumentFormat
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert detect_format(path) is expected


def test_detect_format_docx(tmp_path: Path) -> None:
    assert detect_format(_docx(tmp_path)) is DocumentFormat.DOCX


def test_file_sha256_streams_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 10_000  # 2.5 MB: several read chunks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_parse_text_cyrillic_cp1251_not_read_as_latin(tmp_path: Path) -> None:
    # Misread as cp1252 this would be all accented letters; the guard hands it to detection
    # (which needs a couple of sentences: on one, charset-normalizer picks mac_cyrillic).
    russian = (
        "Привет, как дела? Это тестовый документ про настройку сети. Сервер хранит настройки "
        "в одном файле, и после изменения нужно перезапустить службу."
    )
    path = write_text(tmp_path / "ru.txt", russian, encoding="cp1251")
    document = _parse(path)
    assert document.text == russian
    assert document.language == "other"


def test_parse_pdf_splits_paragraphs_on_vertical_gap(tmp_path: Path) -> None:
    # No full stops and full-width lines: only the extra space between them separates these.
    first = "word " * 40 + "and the first paragraph goes on without a stop"
    second = "another " * 30 + "and the second one neither"
    path = make_pdf(tmp_path / "gaps.pdf", [[first.strip(), second.strip()]])
    assert [b.text for b in _parse(path).blocks] == [first.strip(), second.strip()]


def test_parse_pdf_keeps_numbered_headings_atop_pages(tmp_path: Path) -> None:
    # "Chapter 1", "Chapter 2"... differ only by a number, like a running header, but are headings.
    path = make_pdf(tmp_path / "chapters.pdf", [[f"# Chapter {n}", EN_1] for n in (1, 2, 3)])
    headings = [(b.page, b.text) for b in _parse(path).blocks if b.kind == "heading"]
    assert headings == [(1, "Chapter 1"), (2, "Chapter 2"), (3, "Chapter 3")]
