"""The audit report: assembled per file, published as markdown, exported as an annotated PDF."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pypdf import PageObject, PdfReader, PdfWriter
from reportlab.lib.colors import Color
from reportlab.pdfgen.canvas import Canvas

from core.audit_models import (
    AuditBatchReport,
    AuditorReport,
    AuditReport,
    Finding,
    Severity,
    Verdict,
    overall_verdict,
)
from tasks.audit.layout import PageGeometry

_MARKDOWN_FINDINGS = 200
_CELL_CHARS = 160
_COLORS = {
    Severity.ERROR: Color(0.85, 0.1, 0.1),
    Severity.WARNING: Color(0.95, 0.6, 0.0),
    Severity.INFO: Color(0.1, 0.55, 0.2),
}
_LABEL_SIZE = 6.0


def file_report(
    file: str,
    *,
    content_hash: str,
    language: str,
    page_count: int,
    auditors: Sequence[AuditorReport],
    seconds: float,
) -> AuditReport:
    """The report of one audited file, its verdict the worst of its auditors'."""
    return AuditReport(
        file=file,
        content_hash=content_hash,
        language=language if language in ("es", "en") else "other",
        page_count=page_count,
        verdict=overall_verdict([a.verdict for a in auditors]),
        auditors=sorted(auditors, key=lambda a: a.auditor.value),
        seconds=round(seconds, 3),
    )


def failed_file_report(file: str, error: BaseException) -> AuditReport:
    """The report of a file that could not be audited at all, with the reason."""
    reason = getattr(error, "reason", None)
    text = str(error) or type(error).__name__
    return AuditReport(
        file=file,
        verdict=Verdict.ERROR,
        error=f"{reason.value}: {text}" if reason is not None else text,
    )


def report_markdown(report: AuditBatchReport) -> str:
    """The batch report as markdown for the Prefect UI: verdicts, then findings per file."""
    lines = [
        f"# Document audit (policy `{report.policy}`)",
        "",
        f"{len(report.reports)} file(s) in {report.seconds:.1f} s.",
        "",
        "| file | verdict | disclaimer | format | grammar | logo | pages | error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for file in report.reports:
        verdicts = {a.auditor.value: a.verdict.value for a in file.auditors}
        cells = [
            file.file,
            f"**{file.verdict.value}**",
            *(verdicts.get(name, "") for name in ("disclaimer", "format", "grammar", "logo")),
            str(file.page_count or ""),
            file.error or "",
        ]
        lines.append(_row(cells))
    for file in report.reports:
        findings = [f for a in file.auditors for f in a.findings]
        errors = [a for a in file.auditors if a.error]
        if not findings and not errors:
            continue
        lines += ["", f"## {file.file}", ""]
        for auditor in errors:
            lines.append(f"- auditor **{auditor.auditor.value}** could not run: {auditor.error}")
        if errors:
            lines.append("")
        lines += [
            "| auditor | severity | rule | page | message | expected | actual |",
            "|---|---|---|---|---|---|---|",
        ]
        ranked = sorted(findings, key=_finding_order)
        for finding in ranked[:_MARKDOWN_FINDINGS]:
            cells = [
                finding.auditor.value,
                finding.severity.value,
                finding.rule,
                str(finding.page or ""),
                finding.message,
                finding.expected or "",
                finding.actual or "",
            ]
            lines.append(_row(cells))
        if len(ranked) > _MARKDOWN_FINDINGS:
            lines.append(f"\n… and {len(ranked) - _MARKDOWN_FINDINGS} more findings.")
    return "\n".join(lines)


def _finding_order(finding: Finding) -> tuple[int, int, str]:
    severity = [Severity.ERROR, Severity.WARNING, Severity.INFO].index(finding.severity)
    return severity, finding.page or 0, finding.rule


def _row(cells: Sequence[str]) -> str:
    def clean(cell: str) -> str:
        cell = " ".join(cell.split()).replace("|", "\\|")
        return cell if len(cell) <= _CELL_CHARS else cell[: _CELL_CHARS - 1] + "…"

    return "| " + " | ".join(clean(cell) for cell in cells) + " |"


@task(name="publish-audit-report", cache_policy=NO_CACHE)
def publish_audit_report_task(report: AuditBatchReport) -> None:
    """Attaches the audit report to the flow run as a markdown artifact."""
    create_markdown_artifact(
        markdown=report_markdown(report), key="audit-report", description="Document audit report"
    )


def annotate_pdf(pdf: Path, findings: Sequence[Finding], out: Path) -> Path:
    """Writes a copy of the PDF with each finding's box and rule drawn on its page."""
    by_page: dict[int, list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.page is not None:
            by_page[finding.page].append(finding)
    writer = PdfWriter(clone_from=PdfReader(pdf))
    for number, page_findings in sorted(by_page.items()):
        if number > len(writer.pages):
            continue
        page = writer.pages[number - 1]
        crop = page.cropbox
        geometry = PageGeometry(
            crop=(float(crop.left), float(crop.bottom), float(crop.right), float(crop.top)),
            rotation=page.rotation % 360,
        )
        page.merge_page(_overlay(page_findings, geometry, page.mediabox.right, page.mediabox.top))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as stream:
        writer.write(stream)
    return out


def _overlay(
    findings: Sequence[Finding], geometry: PageGeometry, width: float, height: float
) -> PageObject:
    """A one-page PDF in the page's user space with the findings' boxes and labels."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=(float(width), float(height)))
    canvas.setLineWidth(1.2)
    unboxed = 0
    display_width, display_height = geometry.display_size
    for finding in sorted(findings, key=_finding_order, reverse=True):
        color = _COLORS[finding.severity]
        canvas.setStrokeColor(color)
        canvas.setFillColor(color)
        if finding.box is not None:
            left, bottom, right, top = geometry.user_rect(finding.box)
            canvas.rect(left - 1, bottom - 1, right - left + 2, top - bottom + 2)
            anchor = (finding.box.x0, finding.box.y1 + 1.5)
        else:
            unboxed += 1
            anchor = (6.0, display_height - 6.0 - unboxed * (_LABEL_SIZE + 2))
        x, y = geometry.to_user(min(anchor[0], display_width - 20), anchor[1])
        canvas.saveState()
        canvas.translate(x, y)
        canvas.rotate(geometry.rotation)
        canvas.setFont("Helvetica", _LABEL_SIZE)
        canvas.drawString(0, 0, f"{finding.rule}: {finding.message_en}"[:120])
        canvas.restoreState()
    canvas.showPage()
    canvas.save()
    return PdfReader(io.BytesIO(buffer.getvalue())).pages[0]
