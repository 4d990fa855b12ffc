"""The research report: typed result from a checked draft, and its markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from core.research_models import ReportLanguage, ResearchReport
from tasks.research.citations import CheckedDraft
from tasks.research.writing import PHRASES

Author = Literal["extractive", "llm"]
EXCERPT_CHARS = 300


def build_report(
    *,
    query: str,
    tenant: str,
    language: ReportLanguage,
    sub_questions: Sequence[str],
    checked: CheckedDraft,
    nothing_found: bool,
    planner: Author,
    writer: Author,
    passages_read: int,
    timings: dict[str, float],
) -> ResearchReport:
    """The typed report of a run."""
    return ResearchReport(
        query=query,
        tenant=tenant,
        language=language,
        summary=checked.summary,
        sections=checked.sections,
        citations=checked.citations,
        sub_questions=list(sub_questions),
        nothing_found=nothing_found,
        planner=planner,
        writer=writer,
        passages_read=passages_read,
        dropped_citations=checked.dropped,
        timings={stage: round(seconds, 3) for stage, seconds in timings.items()},
    )


def report_text(report: ResearchReport) -> str:
    """The written part of a report (summary and sections), without the sources."""
    return "\n\n".join([report.summary, *(f"{s.heading}\n{s.text}" for s in report.sections)])


def report_markdown(report: ResearchReport) -> str:
    """The report as markdown: answer, sections, sources with excerpts, sub-questions."""
    words = PHRASES[report.language]
    lines = [f"# {report.query}", "", report.summary, ""]
    for section in report.sections:
        lines += [f"## {section.heading}", "", section.text, ""]
    if report.citations:
        lines += [f"## {words['sources']}", ""]
        for citation in report.citations:
            where = f"**{citation.document}**"
            if citation.page is not None:
                where += f", {words['page']} {citation.page}"
            place = " > ".join(x for x in (citation.title, citation.heading) if x)
            excerpt = " ".join(citation.text.split())
            if len(excerpt) > EXCERPT_CHARS:
                excerpt = excerpt[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"
            lines += [
                f"[{citation.number}] {where} — {place} — `{citation.link}`",
                f"> {excerpt}",
                "",
            ]
    if len(report.sub_questions) > 1:
        lines += [f"## {words['sub_questions']}", ""]
        lines += [f"- {q}" for q in report.sub_questions]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
