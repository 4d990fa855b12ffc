"""Reindex: rebuild the collection into a new version beside the live one, check it, swap."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prefect import flow
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from core.dask import SettingsDaskTaskRunner
from core.embedder import embedder_model_id
from core.models import ChunkedDocument
from core.ops_models import ReindexItem, ReindexPlan, ReindexReport
from core.settings import get_settings
from deployments.names import REINDEX_FLOW
from tasks.embedding import EmbedBatch, embed_batch_task
from tasks.progress import ProgressReporter
from tasks.reindex import (
    ReindexError,
    abandon_version_task,
    activate_task,
    compare_versions_task,
    delete_from_version_task,
    embedding_batches,
    embedding_dim_task,
    plan_reindex_task,
    publish_reindex_report_task,
    reparse_document_task,
    rollback_task,
    sample_queries_task,
    source_unchanged,
    start_version_task,
    stored_document_task,
    write_document_task,
)
from tasks.runs import mark_dead_letter

STAGES = {"planning": 1.0, "rebuilding": 8.0, "catching up": 1.0, "checking": 1.0}
#: Comparison passes before a reindex gives up on a live version that keeps changing.
MAX_CATCH_UP_ROUNDS = 5


@flow(
    name=REINDEX_FLOW,
    task_runner=SettingsDaskTaskRunner(),  # type: ignore[arg-type]
    persist_result=True,
    on_failure=[mark_dead_letter],
    on_crashed=[mark_dead_letter],
)
def reindex_collection(force: bool = False, rollback: bool = False) -> ReindexReport:
    """Rebuilds the collection when the model or chunking changed (or forced) and swaps it in;
    with rollback, points the alias back at the previous version."""
    started = time.monotonic()
    progress = ProgressReporter(STAGES)
    collection = get_settings().collection
    if rollback:
        previous, live = rollback_task()
        report = ReindexReport(
            action="rolled_back",
            collection=collection,
            live_version=live,
            previous_version=previous,
            reason="rollback asked",
        )
        return _finish(report, started, progress)
    progress.update("planning", 0, 1, "Comparing stored documents with the model and chunking")
    plan = plan_reindex_task(force)
    if not plan.needed:
        report = ReindexReport(
            action="skipped",
            collection=collection,
            live_version=plan.live_version,
            previous_version=None,
            reason=plan.reason,
            documents=len(plan.items),
        )
        return _finish(report, started, progress)
    # On a worker: that is where the model is loaded anyway.
    dense_dim = embedding_dim_task.submit().result()
    version = start_version_task(dense_dim, flow_run.get_id()).name
    try:
        report = _build(plan, version, progress, collection)
        activate_task(version)
    except BaseException:
        # Never behind the alias; if this fails too, the next reindex or cleanup drops it.
        abandon_version_task(version)
        raise
    return _finish(report, started, progress)


def _build(
    plan: ReindexPlan, version: str, progress: ProgressReporter, collection: str
) -> ReindexReport:
    """Fills the new version, catches up with the live one and checks it."""
    report = ReindexReport(
        action="reindexed",
        collection=collection,
        live_version=version,
        previous_version=plan.live_version,
        reason=plan.reason,
    )
    _rebuild(plan.items, version, progress, "rebuilding", report)
    settings = get_settings()
    for round_ in range(1, MAX_CATCH_UP_ROUNDS + 1):
        diff = compare_versions_task(version)
        if diff.empty and report.samples is not None:
            break
        report.catch_up_rounds = round_
        report.caught_up += len(diff.to_rebuild) + sum(map(len, diff.to_delete.values()))
        if diff.to_delete:
            delete_from_version_task(version, diff.to_delete)
        if diff.to_rebuild:
            _rebuild(diff.to_rebuild, version, progress, "catching up", report)
        elif diff.empty:
            progress.update("checking", 0, 1, "Running sample queries on the new version")
            report.samples = sample_queries_task(version, settings.reindex_sample_queries)
            if report.samples.answered < report.samples.queries:
                raise ReindexError(
                    f"{version} left {report.samples.queries - report.samples.answered} of "
                    f"{report.samples.queries} sample queries without an answer"
                )
    else:
        raise ReindexError(f"{version} did not catch up with the live version")
    report.documents = len(plan.items)
    return report


def _finish(report: ReindexReport, started: float, progress: ProgressReporter) -> ReindexReport:
    """Stamps the time, publishes the report artifact and closes the progress."""
    report.seconds = round(time.monotonic() - started, 3)
    publish_reindex_report_task(report)
    progress.finish(f"{report.action}: {report.reason}")
    return report


def _rebuild(
    items: Sequence[ReindexItem],
    version: str,
    progress: ProgressReporter,
    stage: str,
    report: ReindexReport,
) -> None:
    """Prepares documents on Dask, embeds them in coarse batches and writes each when whole."""
    progress.update(stage, 0, len(items), f"Preparing {len(items)} document(s)")
    unchanged = [source_unchanged(item) for item in items]
    reparse = [item for item, same in zip(items, unchanged, strict=True) if same]
    stored = [item for item, same in zip(items, unchanged, strict=True) if not same]
    documents: list[tuple[ChunkedDocument, str]] = []
    for item, parsing in zip(reparse, reparse_document_task.map(reparse), strict=True):
        document = parsing.result()
        if document is None:
            stored.append(item)
            continue
        documents.append((document, item.tenant))
        report.reparsed += 1
    for item in stored:
        # Store reads stay in this process: workers need no access to the store.
        document = stored_document_task(item)
        if document is None:
            continue  # being written by an ingestion right now: the next comparison retries it
        documents.append((document, item.tenant))
        report.from_stored_text += 1
    model_id = embedder_model_id(get_settings())
    batches = embedding_batches(documents, get_settings().embed_batch_size)
    total = sum(len(d.chunks) for d, _ in documents)
    vectors: list[list[list[float]]] = [[[] for _ in d.chunks] for d, _ in documents]
    missing = [len(d.chunks) for d, _ in documents]
    submitted: list[PrefectFuture[list[list[float]]]] = [
        embed_batch_task.submit(EmbedBatch(model_id=model_id, texts=b.texts), b.tenant)
        for b in batches
    ]
    slots_of = {f.task_run_id: b.slots for f, b in zip(submitted, batches, strict=True)}
    done = 0
    progress.update(stage, 0, total, f"Embedding {total} chunks into {version}")
    for future in as_completed(submitted):
        batch_vectors = future.result()
        for (index, chunk_index), vector in zip(
            slots_of[future.task_run_id], batch_vectors, strict=True
        ):
            vectors[index][chunk_index] = vector
            missing[index] -= 1
            if missing[index] == 0:
                document, tenant = documents[index]
                write_document_task(version, quote(document), quote(vectors[index]), tenant)  # type: ignore[call-overload]
                report.chunks += len(document.chunks)
                vectors[index] = []
        done += len(batch_vectors)
        progress.update(stage, done, total, f"Embedded {done}/{total} chunks into {version}")


if __name__ != "flows.reindex":
    # Prefect loads the entrypoint as a top-level module that Dask workers cannot import
    # when they unpickle the run context; hand out the flow of the importable package module.
    import flows.reindex as _importable

    reindex_collection = _importable.reindex_collection
