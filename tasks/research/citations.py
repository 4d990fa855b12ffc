"""The citation check: every `[n]` of a draft must name a passage retrieved in this run.

A marker naming no passage is removed and logged; the ones left are renumbered densely in the
order they first appear, and the sources list holds exactly the passages they name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from core.research_models import Citation, Passage, ReportSection

logger = logging.getLogger(__name__)

#: "[3]", "[1, 4]", "[2; 5]", "[2-4]": what writers (and LLMs) put after a claim.
CITATION = re.compile(
    r"\s?\[(\s*\d+(?:\s*[-\u2013]\s*\d+)?(?:\s*[,;]\s*\d+(?:\s*[-\u2013]\s*\d+)?)*\s*)\]"
)
MAX_RANGE = 10


class Draft(BaseModel):
    """A writer's text before the check: numbers refer to the passages it was given."""

    summary: str
    sections: list[ReportSection] = Field(default_factory=list)


class CheckedDraft(BaseModel):
    """A draft whose citations all resolve, renumbered, with its sources."""

    summary: str
    sections: list[ReportSection]
    citations: list[Citation]
    dropped: list[str] = Field(default_factory=list)


def research_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a flow or task run, this module's logger elsewhere."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def _numbers(inside: str) -> list[int] | None:
    """The numbers a marker names, ranges expanded; None when a range is absurd."""
    found: list[int] = []
    for part in re.split(r"[,;]", inside):
        bounds = [int(x) for x in re.split(r"[-\u2013]", part.strip())]
        if len(bounds) == 2:
            low, high = bounds
            if high < low or high - low > MAX_RANGE:
                return None
            found.extend(range(low, high + 1))
        else:
            found.append(bounds[0])
    return found


def passage_link(passage: Passage) -> str:
    """A stable reference to a passage: its document id and chunk, and page when paged."""
    link = f"kb://{passage.doc_id}/chunks/{passage.chunk_index}"
    return f"{link}#page={passage.pages[0]}" if passage.pages else link


def citation_of(number: int, passage: Passage) -> Citation:
    """The numbered source entry of a passage."""
    return Citation(
        number=number,
        document=passage.document,
        title=passage.title,
        page=passage.pages[0] if passage.pages else None,
        pages=passage.pages,
        heading=passage.heading_path[-1] if passage.heading_path else None,
        doc_id=passage.doc_id,
        chunk_id=passage.chunk_id,
        chunk_index=passage.chunk_index,
        link=passage_link(passage),
        text=passage.text,
    )


def _tidy(text: str) -> str:
    """Text with the gaps left by removed markers closed."""
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def check_citations(draft: Draft, passages: Sequence[Passage]) -> CheckedDraft:
    """The draft with unresolvable markers removed (and logged) and the rest renumbered 1..n."""
    renumbered: dict[int, int] = {}
    dropped: list[str] = []

    def replace(match: re.Match[str]) -> str:
        numbers = _numbers(match.group(1))
        marker = match.group(0).strip()
        if numbers is None:
            dropped.append(marker)
            return ""
        kept = []
        for number in numbers:
            if not 1 <= number <= len(passages):
                dropped.append(f"[{number}]")
                continue
            new = renumbered.setdefault(number, len(renumbered) + 1)
            if new not in kept:
                kept.append(new)
        if not kept:
            return ""
        lead = " " if match.group(0).startswith((" ", "\t")) else ""
        return lead + "".join(f"[{n}]" for n in kept)

    summary = _tidy(CITATION.sub(replace, draft.summary))
    sections = [
        ReportSection(
            heading=_tidy(CITATION.sub("", section.heading)),
            text=_tidy(CITATION.sub(replace, section.text)),
        )
        for section in draft.sections
    ]
    sections = [s for s in sections if s.text]
    if dropped:
        research_logger().warning(
            "Removed %d citation(s) naming no retrieved passage (there are %d): %s",
            len(dropped),
            len(passages),
            ", ".join(dropped),
        )
    by_new = sorted(renumbered.items(), key=lambda item: item[1])
    citations = [citation_of(new, passages[old - 1]) for old, new in by_new]
    return CheckedDraft(summary=summary, sections=sections, citations=citations, dropped=dropped)


def cited_numbers(text: str) -> list[int]:
    """Every number cited in a text, in order, repeats kept."""
    found: list[int] = []
    for match in CITATION.finditer(text):
        found.extend(_numbers(match.group(1)) or [])
    return found
