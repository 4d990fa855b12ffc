"""The research stages as Prefect tasks: retried on transient errors, cached on real inputs.

Retrieval caches on the sub-question, the tenant and a digest of that tenant's indexed
documents (ids and versions), so a cached answer never outlives an ingestion or a removal.
LLM stages cache on their inputs and the configured endpoint and model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from prefect import Task, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff
from pydantic import BaseModel

from core.embedder import TransientEmbeddingError, embedder_model_id, get_embedder
from core.llm import TransientLLMError, get_chat_client
from core.research_models import Passage, ReportLanguage, ResearchReport, SubQuestionHits
from core.settings import get_settings
from core.store import TransientStoreError, get_store
from tasks.research.citations import CheckedDraft
from tasks.research.pipeline import plan, read, write
from tasks.research.report import Author, report_markdown
from tasks.research.retrieval import index_state, search_sub_question

#: Part of every cache key: bump it when a stage's logic changes its output.
CACHE_VERSION = "research-1"


class Plan(BaseModel):
    """The sub-questions of a run and who planned them."""

    sub_questions: list[str]
    planner: Author


class Reading(BaseModel):
    """The passages chosen for the report."""

    passages: list[Passage]
    passages_read: int
    found: bool


class Written(BaseModel):
    """The checked draft and who wrote it."""

    checked: CheckedDraft
    writer: Author


def _is_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    try:
        state.result()
    except (TransientLLMError, TransientStoreError, TransientEmbeddingError, TimeoutError):
        return True
    except Exception:
        return False
    return False


_RETRY: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": _is_transient,
}


def _key(*parts: Any) -> str:
    """A cache key over JSON-able parts and the code version."""
    digest = hashlib.sha256(CACHE_VERSION.encode())
    for part in parts:
        if isinstance(part, BaseModel):
            part = part.model_dump(mode="json")
        elif isinstance(part, list):
            part = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in part]
        digest.update(b"\x00" + json.dumps(part, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def _by_parameters(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return _key(context.task.name, *(parameters[name] for name in sorted(parameters)))


def _search_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    settings = get_settings()
    weights = [settings.fusion_weights_en, settings.fusion_weights_es]
    return _key(context.task.name, weights, *(parameters[n] for n in sorted(parameters)))


@task(name="plan-research", cache_policy=CacheKeyFnPolicy(cache_key_fn=_by_parameters), **_RETRY)
def plan_task(query: str, language: ReportLanguage, depth: int, llm: str) -> Plan:
    """Plans sub-questions; `llm` names the configured model so the cache tells them apart."""
    sub_questions, planner = plan(query, language, depth, get_chat_client())
    return Plan(sub_questions=sub_questions, planner=planner)


@task(name="index-state", cache_policy=NO_CACHE, **_RETRY)
def index_state_task(tenant: str) -> str:
    """A digest of the tenant's indexed documents, read fresh from the store."""
    settings = get_settings()
    store = get_store(settings)
    try:
        return index_state(store, tenant, settings, embedder_model_id(settings))
    finally:
        store.close()


@task(
    name="search-sub-question",
    task_run_name="search {sub_question}",
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_search_key),
    **_RETRY,
)
def search_task(
    sub_question: str, tenant: str, language: ReportLanguage, k: int, index: str
) -> SubQuestionHits:
    """Searches one sub-question in the tenant's documents as indexed in state `index`."""
    settings = get_settings()
    store = get_store(settings)
    try:
        return search_sub_question(
            sub_question,
            tenant=tenant,
            language=language,
            k=k,
            store=store,
            embedder=get_embedder(settings),
            settings=settings,
        )
    finally:
        store.close()


@task(name="read-passages", cache_policy=CacheKeyFnPolicy(cache_key_fn=_by_parameters))
def read_task(results: list[SubQuestionHits], language: ReportLanguage, depth: int) -> Reading:
    """Fuses, de-duplicates and selects the passages the report will use."""
    passages, passages_read, found = read(results, language, depth)
    return Reading(passages=passages, passages_read=passages_read, found=found)


@task(name="write-report", cache_policy=CacheKeyFnPolicy(cache_key_fn=_by_parameters), **_RETRY)
def write_task(
    query: str,
    language: ReportLanguage,
    sub_questions: list[str],
    passages: list[Passage],
    llm: str,
) -> Written:
    """Writes the report on the passages and checks that every citation resolves."""
    checked, writer = write(query, language, sub_questions, passages, get_chat_client())
    return Written(checked=checked, writer=writer)


@task(name="publish-research-report", cache_policy=NO_CACHE)
def publish_report_task(report: ResearchReport) -> None:
    """Attaches the report to the flow run as a markdown artifact."""
    create_markdown_artifact(
        markdown=report_markdown(report),
        key="research-report",
        description="Deep-research report with its sources",
    )
