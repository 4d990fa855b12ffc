"""Deep research: plan sub-questions, search each, read the best passages, write a cited report."""

from __future__ import annotations

import time
from typing import Annotated

from prefect import flow
from prefect.futures import as_completed
from pydantic import Field

from core.llm import llm_config_id
from core.research_models import ReportLanguage, ResearchReport
from deployments.names import RESEARCH_FLOW
from tasks.progress import ProgressReporter
from tasks.research.pipeline import (
    MAX_DEPTH,
    MIN_DEPTH,
    hits_per_sub_question,
    report_language,
)
from tasks.research.report import build_report
from tasks.research.selection import distinct_passages
from tasks.research.stages import (
    index_state_task,
    plan_task,
    publish_report_task,
    read_task,
    search_task,
    write_task,
)
from tasks.runs import mark_dead_letter

STAGES = {"planning": 1.0, "searching": 4.0, "reading": 1.0, "writing": 2.0}
MAX_QUERY_CHARS = 2000


@flow(
    name=RESEARCH_FLOW,
    persist_result=True,
    on_failure=[mark_dead_letter],
    on_crashed=[mark_dead_letter],
)
def deep_research(
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)],
    tenant: str = "default",
    language: ReportLanguage | None = None,
    depth: Annotated[int, Field(ge=MIN_DEPTH, le=MAX_DEPTH)] = 3,
) -> ResearchReport:
    """Answers a question from the tenant's documents with a report citing every passage used."""
    progress = ProgressReporter(STAGES)
    timings: dict[str, float] = {}
    lang = report_language(query, language)
    llm = llm_config_id()

    started = time.perf_counter()
    progress.update("planning", 0, 1, "Planning")
    plan = plan_task(query, lang, depth, llm)
    timings["planning"] = time.perf_counter() - started

    started = time.perf_counter()
    index = index_state_task(tenant)
    total = len(plan.sub_questions)
    progress.update("searching", 0, total, f"Searching 0/{total} sub-questions")
    k = hits_per_sub_question(depth)
    futures = [search_task.submit(q, tenant, lang, k, index) for q in plan.sub_questions]
    for done, _ in enumerate(as_completed(futures), start=1):
        progress.update("searching", done, total, f"Searching {done}/{total} sub-questions")
    results = [future.result() for future in futures]
    timings["searching"] = time.perf_counter() - started

    started = time.perf_counter()
    count = distinct_passages(results)
    progress.update("reading", 0, count, f"Reading {count} passages")
    reading = read_task(results, lang, depth)
    timings["reading"] = time.perf_counter() - started

    started = time.perf_counter()
    progress.update("writing", 0, 1, "Writing")
    written = write_task(query, lang, plan.sub_questions, reading.passages, llm)
    timings["writing"] = time.perf_counter() - started

    report = build_report(
        query=query,
        tenant=tenant,
        language=lang,
        sub_questions=plan.sub_questions,
        checked=written.checked,
        nothing_found=not reading.found or not written.checked.citations,
        planner=plan.planner,
        writer=written.writer,
        passages_read=reading.passages_read,
        timings=timings,
    )
    publish_report_task(report)
    progress.finish(f"{len(report.citations)} sources cited from {report.passages_read} passages")
    return report


if __name__ != "flows.research":
    # Prefect loads the entrypoint "flows/research.py:deep_research" as a top-level module
    # named "research"; hand out the flow of the importable package module instead, as
    # flows/ingest.py does.
    import flows.research as _importable

    deep_research = _importable.deep_research
