"""Typed models of the document audit: the policy it checks against and the findings it reports."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AuditLanguage = Literal["es", "en"]


class Auditor(StrEnum):
    """The four auditors; each runs as its own Prefect task."""

    DISCLAIMER = "disclaimer"
    FORMAT = "format"
    GRAMMAR = "grammar"
    LOGO = "logo"


class Severity(StrEnum):
    """How much a finding matters: errors fail the audit, warnings and info do not."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Verdict(StrEnum):
    """Outcome of one auditor, or of the whole audit."""

    PASSED = "passed"
    WARNINGS = "warnings"
    FAILED = "failed"
    ERROR = "error"
    """The auditor itself could not run (its reason is in AuditorReport.error)."""


class Box(BaseModel):
    """A rectangle in PDF user-space points of the page as displayed (origin bottom-left).

    Coordinates account for the page's rotation and crop box, so a viewer can draw the box on
    the page exactly as it is shown.
    """

    x0: float
    y0: float
    x1: float
    y1: float

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError("a box needs x0 <= x1 and y0 <= y1")
        return self


class Finding(BaseModel):
    """One thing an auditor found, located on a page when it has a place."""

    auditor: Auditor
    rule: str = Field(description="Stable rule id, e.g. 'disclaimer.altered', 'logo.missing'.")
    severity: Severity
    page: int | None = Field(default=None, ge=1, description="1-based page number.")
    box: Box | None = None
    message: str = Field(description="The message in the document's language.")
    message_en: str = Field(description="The same message in English.")
    expected: str | None = None
    actual: str | None = None
    suggestion: str | None = None


class AuditorReport(BaseModel):
    """What one auditor concluded, with its findings; error is set when it could not run."""

    auditor: Auditor
    verdict: Verdict
    findings: list[Finding] = Field(default_factory=list)
    error: str | None = None
    seconds: float = Field(default=0.0, ge=0)


class AuditReport(BaseModel):
    """The result of auditing one file: a verdict per auditor and overall."""

    file: str = Field(description="File name as the user gave it.")
    content_hash: str | None = None
    language: Literal["es", "en", "other"] = "other"
    page_count: int = Field(default=0, ge=0)
    verdict: Verdict
    auditors: list[AuditorReport] = Field(default_factory=list)
    error: str | None = Field(
        default=None, description="Why the file could not be audited at all (corrupt, encrypted…)."
    )
    annotated_pdf: str | None = Field(
        default=None, description="Path of the PDF with the findings drawn on its pages."
    )
    seconds: float = Field(default=0.0, ge=0)


class AuditBatchReport(BaseModel):
    """The flow result: one report per audited file."""

    reports: list[AuditReport]
    policy: str = Field(description="Name of the policy the files were checked against.")
    seconds: float = Field(default=0.0, ge=0)


def auditor_verdict(findings: list[Finding]) -> Verdict:
    """Failed with any error finding, warnings with any warning, passed otherwise."""
    severities = {finding.severity for finding in findings}
    if Severity.ERROR in severities:
        return Verdict.FAILED
    if Severity.WARNING in severities:
        return Verdict.WARNINGS
    return Verdict.PASSED


def overall_verdict(verdicts: list[Verdict]) -> Verdict:
    """The worst of the auditors' verdicts (an auditor that could not run counts as an error)."""
    for worst in (Verdict.ERROR, Verdict.FAILED, Verdict.WARNINGS):
        if worst in verdicts:
            return worst
    return Verdict.PASSED


class Word(BaseModel):
    """One word of a page's text and its box."""

    text: str
    box: Box


class Paragraph(BaseModel):
    """A paragraph of a PDF page as read for auditing.

    `text` is the words joined by single spaces (after de-hyphenation a word may span two lines,
    its box then covers the first part), so a character offset maps to a word by counting spaces.
    """

    page: int = Field(ge=1)
    text: str
    words: list[Word]
    font: str | None = Field(default=None, description="Dominant font name, subset prefix removed.")
    size: float | None = Field(default=None, description="Dominant type size in points.")

    @property
    def box(self) -> Box:
        """The smallest box holding every word."""
        return Box(
            x0=min(w.box.x0 for w in self.words),
            y0=min(w.box.y0 for w in self.words),
            x1=max(w.box.x1 for w in self.words),
            y1=max(w.box.y1 for w in self.words),
        )


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DisclaimerRule(_Rule):
    """A text that must appear in the document, per language."""

    id: str = Field(pattern=r"^[a-z0-9_.-]{1,64}$")
    text: dict[AuditLanguage, str] = Field(
        min_length=1, description="The required wording per language; the document's decides."
    )
    severity: Severity = Severity.ERROR
    pages: Literal["any", "first", "last"] = "any"


class PageRule(_Rule):
    """Page geometry: allowed sizes (in points) and orientation, and the margins text must keep."""

    sizes: list[tuple[float, float]] = Field(
        default_factory=lambda: [(595.28, 841.89), (612.0, 792.0)],
        description="Allowed portrait (width, height) in points; A4 and Letter by default.",
    )
    size_tolerance_pt: float = Field(default=3.0, ge=0)
    orientation: Literal["portrait", "landscape", "any"] = "portrait"
    margins_pt: tuple[float, float, float, float] = Field(
        default=(36.0, 36.0, 36.0, 36.0),
        description="Minimum left, top, right, bottom margins, in points.",
    )


class FontRule(_Rule):
    """Fonts and type sizes the document may use."""

    allowed: list[str] = Field(
        default_factory=list, description="Allowed font family names; empty allows any."
    )
    require_embedded: bool = True
    body_size_pt: tuple[float, float] = (9.0, 13.0)
    heading_size_pt: tuple[float, float] = (12.0, 28.0)


class ImageRule(_Rule):
    """Minimum resolution of embedded images."""

    min_dpi: float = Field(default=150.0, gt=0)


class LogoRule(_Rule):
    """A reference logo and where it is expected on the pages."""

    id: str = Field(pattern=r"^[a-z0-9_.-]{1,64}$")
    image: str = Field(description="Path of the reference image, relative to the policy file.")
    pages: Literal["first", "all", "any"] = "first"
    region: tuple[float, float, float, float] | None = Field(
        default=None,
        description="Expected box as fractions of the page (x0, y0, x1, y1), origin top-left; "
        "None accepts any place.",
    )
    width_fraction: tuple[float, float] | None = Field(
        default=None, description="Allowed logo width as a fraction of the page width."
    )
    max_rotation_deg: float = Field(default=3.0, ge=0)
    max_aspect_distortion: float = Field(
        default=0.05, ge=0, description="Largest accepted relative change of width/height."
    )
    max_color_distance: float = Field(
        default=40.0, ge=0, description="Largest accepted mean colour distance (CIELAB ΔE)."
    )
    severity: Severity = Severity.ERROR


_BOTH_LANGUAGES: tuple[AuditLanguage, ...] = ("es", "en")


class SpellingRule(_Rule):
    """What the grammar auditor checks and which words it never flags."""

    languages: list[AuditLanguage] = Field(default_factory=lambda: list(_BOTH_LANGUAGES))
    glossary: list[str] = Field(default_factory=list, description="Words never flagged.")
    severity: Severity = Severity.WARNING


class AuditPolicy(_Rule):
    """Everything an audit checks; a default ships with the project, a request may bring its own."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    disclaimers: list[DisclaimerRule] = Field(default_factory=list)
    page: PageRule = Field(default_factory=PageRule)
    fonts: FontRule = Field(default_factory=FontRule)
    images: ImageRule = Field(default_factory=ImageRule)
    logos: list[LogoRule] = Field(default_factory=list)
    spelling: SpellingRule = Field(default_factory=SpellingRule)
    require_page_numbers: bool = True
