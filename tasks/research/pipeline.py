"""The research stages as plain functions, and the whole run without Prefect (for evaluation).

The flow in flows/research.py calls the same stage functions through cached, retryable tasks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from core.language import detect_query_language
from core.llm import ChatClient, LLMError
from core.research_models import Passage, ReportLanguage, ResearchReport, SubQuestionHits
from core.search import QueryEmbedder
from core.settings import Settings
from core.store import VectorStore
from tasks.research.citations import CheckedDraft, check_citations, research_logger
from tasks.research.planning import plan_extractive, plan_with_llm
from tasks.research.report import Author, build_report
from tasks.research.retrieval import found_anything, search_sub_question
from tasks.research.selection import (
    drop_duplicates,
    fuse_sub_questions,
    passage_budget,
    select_passages,
)
from tasks.research.writing import (
    DraftParseError,
    nothing_found_draft,
    parse_draft,
    write_extractive,
    writer_messages,
)

MIN_DEPTH = 1
MAX_DEPTH = 5


def report_language(query: str, language: ReportLanguage | None) -> ReportLanguage:
    """The language asked for, else the question's own (English when unclear)."""
    return language or detect_query_language(query)


def hits_per_sub_question(depth: int) -> int:
    """Passages each sub-question retrieves at this depth."""
    return 4 + 2 * depth


def plan(
    query: str, language: ReportLanguage, depth: int, client: ChatClient | None
) -> tuple[list[str], Author]:
    """The sub-questions to search, the question itself first, and who planned them."""
    if client is None:
        return plan_extractive(query, language, depth), "extractive"
    planned, used_llm = plan_with_llm(query, language, depth, client)
    return planned, "llm" if used_llm else "extractive"


def read(
    results: Sequence[SubQuestionHits], language: ReportLanguage, depth: int
) -> tuple[list[Passage], int, bool]:
    """The passages chosen for the report, how many distinct ones were read, and whether
    anything relevant was found at all."""
    fused = drop_duplicates(fuse_sub_questions(results))
    if not found_anything(results, language):
        return [], len(fused), False
    return select_passages(fused, passage_budget(depth), language), len(fused), True


def write(
    query: str,
    language: ReportLanguage,
    sub_questions: Sequence[str],
    passages: Sequence[Passage],
    client: ChatClient | None,
) -> tuple[CheckedDraft, Author]:
    """The checked draft, by the LLM when there is one and it cites something, else extractive."""
    if not passages:
        return check_citations(nothing_found_draft(query, language), []), "extractive"
    if client is not None:
        try:
            reply = client.complete(writer_messages(query, language, sub_questions, passages))
            checked = check_citations(parse_draft(reply), passages)
        except (DraftParseError, LLMError) as exc:
            research_logger().warning("LLM report unusable (%s); writing extractively", exc)
        else:
            if checked.citations and checked.summary:
                return checked, "llm"
            research_logger().warning("LLM report cites no passage; writing extractively")
    draft = write_extractive(query, language, sub_questions, passages)
    return check_citations(draft, passages), "extractive"


def run_research(
    query: str,
    *,
    tenant: str,
    language: ReportLanguage | None,
    depth: int,
    store: VectorStore,
    embedder: QueryEmbedder,
    settings: Settings,
    client: ChatClient | None = None,
) -> ResearchReport:
    """A whole research run in this process, stage by stage, timed."""
    timings: dict[str, float] = {}
    lang = report_language(query, language)
    started = time.perf_counter()
    sub_questions, planner = plan(query, lang, depth, client)
    timings["planning"] = time.perf_counter() - started
    started = time.perf_counter()
    k = hits_per_sub_question(depth)
    results = [
        search_sub_question(
            q, tenant=tenant, language=lang, k=k, store=store, embedder=embedder, settings=settings
        )
        for q in sub_questions
    ]
    timings["searching"] = time.perf_counter() - started
    started = time.perf_counter()
    passages, read_count, found = read(results, lang, depth)
    timings["reading"] = time.perf_counter() - started
    started = time.perf_counter()
    checked, writer = write(query, lang, sub_questions, passages, client)
    timings["writing"] = time.perf_counter() - started
    return build_report(
        query=query,
        tenant=tenant,
        language=lang,
        sub_questions=sub_questions,
        checked=checked,
        nothing_found=not found or not checked.citations,
        planner=planner,
        writer=writer,
        passages_read=read_count,
        timings=timings,
    )
