"""Research evaluation: labelled questions, answerable or not, run through the research stages."""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from core.embedder import get_embedder
from core.evaluation import fold
from core.llm import get_chat_client
from core.models import ChunkPayload
from core.research_models import ReportLanguage, ResearchReport
from core.settings import Settings, get_settings
from core.store import get_store
from tasks.research.citations import cited_numbers
from tasks.research.pipeline import run_research
from tasks.research.report import report_text

logger = logging.getLogger(__name__)


class ResearchQuestion(BaseModel):
    """A labelled question: spans that answer it, or `answerable: false`."""

    query: str = Field(min_length=1, max_length=2000, description="The question as a user asks it.")
    answers: list[str] = Field(
        default_factory=list, description="Spans found verbatim in a passage that answers it."
    )
    document: str | None = Field(
        default=None, description="File name of the document holding the answer."
    )
    answerable: bool = Field(
        default=True, description="False when the knowledge base cannot answer the question."
    )

    @model_validator(mode="after")
    def _answers_match_answerable(self) -> ResearchQuestion:
        if self.answerable and not self.answers:
            raise ValueError("an answerable question needs at least one answer")
        if not self.answerable and self.answers:
            raise ValueError("an unanswerable question has no answers")
        return self


class QuestionOutcome(BaseModel):
    """How one report did."""

    query: str
    language: ReportLanguage
    answerable: bool
    nothing_found: bool
    answer_in_report: bool = Field(description="A gold answer is in the summary or sections.")
    answer_in_sources: bool = Field(description="A gold answer is in a cited passage.")
    citations: int = Field(ge=0)
    resolved: int = Field(ge=0, description="Citations that resolve to a retrieved passage.")
    seconds: float


class ResearchScores(BaseModel):
    """Figures of `octavius eval research` over a question set."""

    n: int = Field(ge=1)
    answerable: int = Field(ge=0)
    unanswerable: int = Field(ge=0)
    answer_in_report: float | None = Field(
        description="Share of answerable questions whose report text holds a gold answer."
    )
    answer_in_sources: float | None = Field(
        description="Share of answerable questions with a gold answer in a cited passage."
    )
    citations: int = Field(ge=0, description="Citations over all reports.")
    citations_resolved: float | None = Field(
        description="Share of citations that resolve to a passage retrieved in the run (must be 1)."
    )
    nothing_found_accuracy: float | None = Field(
        description="Share of unanswerable questions answered with 'nothing relevant'."
    )
    false_nothing_found: float | None = Field(
        description="Share of answerable questions wrongly answered with 'nothing relevant'."
    )
    median_seconds: float = Field(description="Median time per report.")
    outcomes: list[QuestionOutcome]


def load_research_questions(path: Path) -> list[ResearchQuestion]:
    """The questions of a JSON Lines file, one object per non-blank line."""
    questions: list[ResearchQuestion] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                questions.append(ResearchQuestion.model_validate(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors()
                )
                raise ValueError(f"{path}:{number}: {problems}") from exc
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


def resolved_citations(report: ResearchReport, stored: dict[str, ChunkPayload]) -> int:
    """Citations that name a stored passage of the tenant with the cited text, numbered 1..n
    without gaps, and every number in the text has one."""
    numbers = {c.number for c in report.citations}
    in_text = set(cited_numbers(report_text(report)))
    if numbers != set(range(1, len(numbers) + 1)) or not in_text <= numbers:
        return 0
    return sum(
        1
        for c in report.citations
        if (payload := stored.get(c.chunk_id)) is not None
        and payload.doc_id == c.doc_id
        and payload.text == c.text
        and c.number in in_text
    )


def score_report(
    question: ResearchQuestion,
    report: ResearchReport,
    stored: dict[str, ChunkPayload],
    seconds: float,
) -> QuestionOutcome:
    """The outcome of one question's report."""
    answers = [fold(a) for a in question.answers]
    text = fold(report_text(report))
    sources = [
        fold(c.text)
        for c in report.citations
        if question.document is None or c.document == question.document
    ]
    return QuestionOutcome(
        query=question.query,
        language=report.language,
        answerable=question.answerable,
        nothing_found=report.nothing_found,
        answer_in_report=not report.nothing_found and any(a in text for a in answers),
        answer_in_sources=any(a in s for a in answers for s in sources),
        citations=len(report.citations),
        resolved=resolved_citations(report, stored),
        seconds=round(seconds, 3),
    )


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def summarize(outcomes: Sequence[QuestionOutcome]) -> ResearchScores:
    """Figures over the outcomes."""
    if not outcomes:
        raise ValueError("no outcomes to score")
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    citations = sum(o.citations for o in outcomes)
    return ResearchScores(
        n=len(outcomes),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        answer_in_report=_share(sum(o.answer_in_report for o in answerable), len(answerable)),
        answer_in_sources=_share(sum(o.answer_in_sources for o in answerable), len(answerable)),
        citations=citations,
        citations_resolved=_share(sum(o.resolved for o in outcomes), citations),
        nothing_found_accuracy=_share(
            sum(o.nothing_found for o in unanswerable), len(unanswerable)
        ),
        false_nothing_found=_share(sum(o.nothing_found for o in answerable), len(answerable)),
        median_seconds=round(statistics.median(o.seconds for o in outcomes), 3),
        outcomes=list(outcomes),
    )


def evaluate_research(
    questions: Sequence[ResearchQuestion],
    *,
    tenant: str,
    depth: int = 3,
    settings: Settings | None = None,
) -> ResearchScores:
    """Writes a report for every question (the flow's stages, in this process) and scores them."""
    settings = settings or get_settings()
    store = get_store(settings)
    embedder = get_embedder(settings)
    client = get_chat_client(settings)
    try:
        stored = dict(store.scroll(tenant))
        outcomes = []
        for question in questions:
            started = time.perf_counter()
            report = run_research(
                question.query,
                tenant=tenant,
                language=None,
                depth=depth,
                store=store,
                embedder=embedder,
                settings=settings,
                client=client,
            )
            outcome = score_report(question, report, stored, time.perf_counter() - started)
            logger.debug("%s", outcome)
            outcomes.append(outcome)
    finally:
        store.close()
        if client is not None:
            client.close()
    return summarize(outcomes)
