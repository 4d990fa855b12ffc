"""The format auditor: page geometry, margins, fonts, type sizes, page numbers, image resolution."""

from __future__ import annotations

import ctypes
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from core.audit_models import Auditor, AuditPolicy, Box, Finding, Severity
from core.models import FailureReason
from tasks.audit.layout import PageGeometry, open_pdf, page_geometry
from tasks.audit.render import EmbeddedImage, embedded_images
from tasks.parsers import ParseError
from tasks.parsers.pdf import PDFIUM_LOCK

__all__ = ["TextRun", "audit_format", "font_family"]

_SUBSET_PREFIX = re.compile(r"^[A-Z]{6}\+")
_FAMILY_SUFFIXES = re.compile(r"(?:psmt|mt|ps)$")
_PAGE_NUMBER = re.compile(
    r"^(?:(?:p[aá]g(?:ina)?|page|p)\.?\s*)?[-\u2013\u2014]?\s*(\d{1,4})\s*[-\u2013\u2014]?"
    r"(?:\s*(?:of|de|/)\s*\d{1,4})?$",
    re.IGNORECASE,
)
_NUMBER_BAND = 0.12
"""Page numbers sit within this fraction of the page height from the top or bottom edge."""
_HEADING_RATIO = 1.15
_EDGE_TOLERANCE = 0.5
_SMALL_IMAGE_PT = 18.0
_MAX_MARGIN_FINDINGS = 50
_NAME_BYTES = 256


@dataclass(frozen=True)
class TextRun:
    """A visible text object of a page: its text, font, effective size and displayed box."""

    page: int
    text: str
    font: str
    embedded: bool
    size: float
    box: Box


@dataclass(frozen=True)
class _Page:
    number: int
    size: tuple[float, float]
    runs: list[TextRun]
    images: list[EmbeddedImage]


def audit_format(pdf: Path, policy: AuditPolicy, *, language: str = "en") -> list[Finding]:
    """Every format problem of the PDF under the policy's page, font, image and number rules."""
    pages = read_format(pdf)
    say = _Say(language)
    numbers = {page.number: _page_number(page) for page in pages}
    number_runs = {id(run) for run in numbers.values() if run is not None}
    findings = [
        *_geometry(pages, policy, say),
        *_margins(pages, policy, say, number_runs),
        *_fonts(pages, policy, say),
        *_sizes(pages, policy, say, number_runs),
        *_images(pages, policy, say),
    ]
    if policy.require_page_numbers:
        findings.extend(_page_numbers(pages, numbers, say))
    return findings


def read_format(pdf: Path) -> list[_Page]:
    """Page sizes, visible text runs and images of every page; ParseError when unreadable."""
    with PDFIUM_LOCK:
        document = open_pdf(pdf)
        try:
            return [_read_page(document, index) for index in range(len(document))]
        except pdfium.PdfiumError as exc:
            raise ParseError(FailureReason.CORRUPT, f"PDF is not readable: {exc}") from exc
        finally:
            document.close()


def _read_page(document: pdfium.PdfDocument, index: int) -> _Page:
    page = document[index]
    try:
        geometry = page_geometry(page)
        textpage = page.get_textpage()
        try:
            runs = list(_text_runs(page, textpage, geometry, index + 1))
        finally:
            textpage.close()
        images = embedded_images(page, geometry)
    finally:
        page.close()
    return _Page(number=index + 1, size=geometry.display_size, runs=runs, images=images)


def _text_runs(
    page: pdfium.PdfPage, textpage: pdfium.PdfTextPage, geometry: PageGeometry, number: int
) -> Iterable[TextRun]:
    """The page's top-level visible text objects."""
    name = ctypes.create_string_buffer(_NAME_BYTES)
    size = ctypes.c_float()
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_TEXT,), max_depth=1):
        raw = obj.raw
        if pdfium_c.FPDFTextObj_GetTextRenderMode(raw) == pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE:
            continue
        text = _object_text(raw, textpage)
        if not text.strip():
            continue
        font = pdfium_c.FPDFTextObj_GetFont(raw)
        length = pdfium_c.FPDFFont_GetBaseFontName(font, name, _NAME_BYTES) if font else 0
        font_name = _SUBSET_PREFIX.sub("", name.value.decode("utf-8", "replace")) if length else ""
        embedded = bool(font) and bool(pdfium_c.FPDFFont_GetIsEmbedded(font))
        nominal = size.value if pdfium_c.FPDFTextObj_GetFontSize(raw, ctypes.byref(size)) else 0.0
        matrix = obj.get_matrix()
        effective = nominal * (matrix.c**2 + matrix.d**2) ** 0.5
        left, bottom, right, top = obj.get_bounds()
        yield TextRun(
            page=number,
            text=text.strip(),
            font=font_name or "(unnamed)",
            embedded=embedded,
            size=round(effective, 2),
            box=geometry.box(left, bottom, right, top),
        )


def _object_text(raw: pdfium_c.FPDF_PAGEOBJECT, textpage: pdfium.PdfTextPage) -> str:
    """The Unicode text of a text object."""
    length = pdfium_c.FPDFTextObj_GetText(raw, textpage.raw, None, 0)
    if length <= 2:
        return ""
    buffer = ctypes.create_string_buffer(length)
    pdfium_c.FPDFTextObj_GetText(
        raw, textpage.raw, ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ushort)), length
    )
    return buffer.raw[: length - 2].decode("utf-16-le", "replace")


def font_family(name: str) -> str:
    """A comparable family key of a font name: 'ABCDEF+Arial-BoldMT' and 'Arial' give 'arial'."""
    base = _SUBSET_PREFIX.sub("", name).split("-")[0].split(",")[0]
    key = re.sub(r"[\s_]+", "", base).lower()
    return _FAMILY_SUFFIXES.sub("", key) or key


class _Say:
    """Messages in the document's language, with the English alongside."""

    def __init__(self, language: str) -> None:
        self.spanish = language == "es"

    def finding(
        self,
        rule: str,
        severity: Severity,
        es: str,
        en: str,
        *,
        page: int | None = None,
        box: Box | None = None,
        expected: str | None = None,
        actual: str | None = None,
        suggestion: tuple[str, str] | None = None,
    ) -> Finding:
        return Finding(
            auditor=Auditor.FORMAT,
            rule=f"format.{rule}",
            severity=severity,
            page=page,
            box=box,
            message=es if self.spanish else en,
            message_en=en,
            expected=expected,
            actual=actual,
            suggestion=None if suggestion is None else suggestion[0 if self.spanish else 1],
        )


def _pages_text(pages: list[int]) -> str:
    runs: list[list[int]] = []
    for page in pages:
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _geometry(pages: list[_Page], policy: AuditPolicy, say: _Say) -> list[Finding]:
    """One finding per distinct wrong page size and per wrong orientation, listing the pages."""
    rule = policy.page
    wrong_size: dict[tuple[float, float], list[int]] = {}
    wrong_orientation: dict[str, list[int]] = {}
    for page in pages:
        width, height = page.size
        fits = any(
            max(abs(width - w), abs(height - h)) <= rule.size_tolerance_pt
            or max(abs(width - h), abs(height - w)) <= rule.size_tolerance_pt
            for w, h in rule.sizes
        )
        if not fits:
            wrong_size.setdefault((round(width, 1), round(height, 1)), []).append(page.number)
        shape = "landscape" if width > height else "portrait"
        if rule.orientation != "any" and shape != rule.orientation:
            wrong_orientation.setdefault(shape, []).append(page.number)
    allowed = ", ".join(f"{w:g}x{h:g}" for w, h in rule.sizes)
    findings = []
    for (width, height), numbers in wrong_size.items():
        listed = _pages_text(numbers)
        findings.append(
            say.finding(
                "page_size", Severity.ERROR,
                f"Tamaño de página {width:g}x{height:g} pt no permitido (página {listed}).",
                f"Page size {width:g}x{height:g} pt is not allowed (page {listed}).",
                page=numbers[0], expected=f"{allowed} pt", actual=f"{width:g}x{height:g} pt",
                suggestion=("Use A4 o Carta.", "Use an allowed page size (A4 or Letter)."),
            )
        )  # fmt: skip
    names = {"portrait": ("vertical", "portrait"), "landscape": ("horizontal", "landscape")}
    for shape, numbers in wrong_orientation.items():
        listed = _pages_text(numbers)
        want_es, want_en = names[rule.orientation]
        got_es, got_en = names[shape]
        findings.append(
            say.finding(
                "orientation", Severity.ERROR,
                f"Página en orientación {got_es}; se espera {want_es} (página {listed}).",
                f"Page is {got_en}; {want_en} is expected (page {listed}).",
                page=numbers[0], expected=want_en, actual=got_en,
                suggestion=(f"Ponga la página en {want_es}.", f"Turn the page to {want_en}."),
            )
        )  # fmt: skip
    return findings


def _margins(pages: list[_Page], policy: AuditPolicy, say: _Say, exempt: set[int]) -> list[Finding]:
    """Text that reaches into the margins (page numbers excepted), one finding per text run."""
    left, top, right, bottom = policy.page.margins_pt
    findings: list[Finding] = []
    for page in pages:
        width, height = page.size
        for run in page.runs:
            if id(run) in exempt:
                continue
            box = run.box
            distances = {
                ("izquierdo", "left"): (box.x0, left),
                ("superior", "top"): (height - box.y1, top),
                ("derecho", "right"): (width - box.x1, right),
                ("inferior", "bottom"): (box.y0, bottom),
            }
            breaches = [
                (side, distance, minimum)
                for side, (distance, minimum) in distances.items()
                if distance < minimum - _EDGE_TOLERANCE
            ]
            if not breaches:
                continue
            (side_es, side_en), distance, minimum = min(breaches, key=lambda b: b[1] - b[2])
            snippet = run.text[:40]
            findings.append(
                say.finding(
                    "margin", Severity.WARNING,
                    f"Texto dentro del margen {side_es} (página {page.number}): «{snippet}».",
                    f"Text inside the {side_en} margin (page {page.number}): \"{snippet}\".",
                    page=page.number, box=box,
                    expected=f"{side_en} margin ≥ {minimum:g} pt",
                    actual=f"{max(distance, 0.0):.1f} pt from the {side_en} edge",
                    suggestion=("Mueva el texto dentro del área permitida.",
                                "Move the text inside the allowed area."),
                )
            )  # fmt: skip
            if len(findings) >= _MAX_MARGIN_FINDINGS:
                return findings
    return findings


def _fonts(pages: list[_Page], policy: AuditPolicy, say: _Say) -> list[Finding]:
    """One finding per font outside the allowed families and per font not embedded."""
    allowed = {font_family(name) for name in policy.fonts.allowed}
    first: dict[str, TextRun] = {}
    for page in pages:
        for run in page.runs:
            first.setdefault(run.font, run)
    findings = []
    for font, run in first.items():
        if allowed and font_family(font) not in allowed:
            findings.append(
                say.finding(
                    "font", Severity.ERROR,
                    f"Fuente no permitida: {font} (página {run.page}).",
                    f"Font not allowed: {font} (page {run.page}).",
                    page=run.page, box=run.box,
                    expected=", ".join(policy.fonts.allowed), actual=font,
                    suggestion=("Use una de las fuentes permitidas.", "Use an allowed font."),
                )
            )  # fmt: skip
        if policy.fonts.require_embedded and not run.embedded:
            findings.append(
                say.finding(
                    "font_embedding", Severity.ERROR,
                    f"La fuente {font} no está incrustada (página {run.page}).",
                    f"Font {font} is not embedded (page {run.page}).",
                    page=run.page, box=run.box, expected="embedded", actual="not embedded",
                    suggestion=("Incruste las fuentes al exportar el PDF.",
                                "Embed the fonts when exporting the PDF."),
                )
            )  # fmt: skip
    return findings


def _sizes(pages: list[_Page], policy: AuditPolicy, say: _Say, exempt: set[int]) -> list[Finding]:
    """Body size (the size of most text), heading sizes and too-small text against the policy."""
    runs = [run for page in pages for run in page.runs if id(run) not in exempt and run.size > 0]
    if not runs:
        return []
    weights: Counter[float] = Counter()
    for run in runs:
        weights[round(run.size * 2) / 2] += len(run.text)
    body = weights.most_common(1)[0][0]
    body_low, body_high = policy.fonts.body_size_pt
    head_low, head_high = policy.fonts.heading_size_pt
    findings = []
    first_of: dict[tuple[str, float], TextRun] = {}
    for run in runs:
        size = round(run.size * 2) / 2
        if size == body:
            kind = "body_size" if not body_low <= size <= body_high else None
        elif size >= body * _HEADING_RATIO:
            kind = "heading_size" if not head_low <= size <= head_high else None
        else:
            kind = "text_size" if size < body_low else None
        if kind is not None:
            first_of.setdefault((kind, size), run)
    texts = {
        "body_size": ("Cuerpo de texto", "Body text", f"{body_low:g}-{body_high:g} pt"),
        "heading_size": ("Título", "Heading", f"{head_low:g}-{head_high:g} pt"),
        "text_size": ("Texto demasiado pequeño", "Text too small", f"≥ {body_low:g} pt"),
    }
    for (kind, size), run in first_of.items():
        label_es, label_en, expected = texts[kind]
        findings.append(
            say.finding(
                kind, Severity.WARNING,
                f"{label_es} de {size:g} pt fuera de {expected} (página {run.page}).",
                f"{label_en} at {size:g} pt is outside {expected} (page {run.page}).",
                page=run.page, box=run.box, expected=expected, actual=f"{size:g} pt",
                suggestion=("Ajuste el tamaño de letra.", "Adjust the type size."),
            )
        )  # fmt: skip
    return findings


def _page_number(page: _Page) -> TextRun | None:
    """The run that numbers the page: a number near the top or bottom edge, nearest the edge."""
    height = page.size[1]
    band = _NUMBER_BAND * height
    candidates = [
        run
        for run in page.runs
        if _PAGE_NUMBER.match(run.text) and (run.box.y1 <= band or run.box.y0 >= height - band)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda run: min(run.box.y0, height - run.box.y1))


def _page_numbers(
    pages: list[_Page], numbers: dict[int, TextRun | None], say: _Say
) -> list[Finding]:
    """Pages without a number (one finding) and pages whose number breaks the sequence."""
    values: dict[int, int] = {}
    for page, run in numbers.items():
        if run is not None:
            match = _PAGE_NUMBER.match(run.text)
            assert match is not None
            values[page] = int(match.group(1))
    findings = []
    missing = [page.number for page in pages if page.number not in values]
    if missing:
        listed = _pages_text(missing)
        findings.append(
            say.finding(
                "page_number_missing", Severity.WARNING,
                f"Falta el número de página (página {listed}).",
                f"Page number missing (page {listed}).",
                page=missing[0], expected="a page number at the top or bottom of every page",
                actual=f"none on page {listed}",
                suggestion=("Numere todas las páginas.", "Number every page."),
            )
        )  # fmt: skip
    if values:
        offset = Counter(number - page for page, number in values.items()).most_common(1)[0][0]
        for page, number in sorted(values.items()):
            if number != page + offset:
                run = numbers[page]
                findings.append(
                    say.finding(
                        "page_number_sequence", Severity.WARNING,
                        f"Número de página {number} fuera de secuencia; se espera {page + offset} "
                        f"(página {page}).",
                        f"Page number {number} is out of sequence; {page + offset} expected "
                        f"(page {page}).",
                        page=page, box=run.box if run else None,
                        expected=str(page + offset), actual=str(number),
                        suggestion=("Corrija la numeración.", "Fix the page numbering."),
                    )
                )  # fmt: skip
    return findings


def _images(pages: list[_Page], policy: AuditPolicy, say: _Say) -> list[Finding]:
    """Images whose effective resolution (pixels per placed inch) is below the minimum."""
    minimum = policy.images.min_dpi
    findings = []
    for page in pages:
        for image in page.images:
            width, height = image.placed_size
            if max(width, height) < _SMALL_IMAGE_PT or image.dpi >= minimum:
                continue
            findings.append(
                say.finding(
                    "image_resolution", Severity.WARNING,
                    f"Imagen de {image.dpi:.0f} ppp, por debajo de {minimum:g} "
                    f"(página {page.number}).",
                    f"Image at {image.dpi:.0f} dpi, below {minimum:g} (page {page.number}).",
                    page=page.number, box=image.box,
                    expected=f"≥ {minimum:g} dpi", actual=f"{image.dpi:.0f} dpi",
                    suggestion=("Use una imagen de mayor resolución.",
                                "Use a higher-resolution image."),
                )
            )  # fmt: skip
    return findings
