"""RAG ingestion: plan, parse and chunk, embed on Dask, index, report."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prefect import flow, unmapped
from prefect.futures import PrefectFuture, as_completed
from prefect.utilities.annotations import quote

from core.dask import SettingsDaskTaskRunner, worker_slots
from core.embedder import embedder_model_id
from core.models import (
    ChunkedDocument,
    DocumentReport,
    FailureReason,
    IngestReport,
    PlannedDocument,
)
from core.settings import get_settings
from deployments.names import INGEST_FLOW
from tasks.documents import parse_and_chunk_task
from tasks.embedding import EmbedBatch, embed_batch_task, plan_batches
from tasks.indexing import IndexItem, index_documents_task, remove_documents_task
from tasks.parsing import ParseError
from tasks.planning import plan_task
from tasks.progress import ProgressReporter
from tasks.reporting import (
    build_report,
    failed_report,
    indexed_report,
    publish_report_task,
    removed_report,
)
from tasks.runs import mark_dead_letter

STAGES = {"planning": 1.0, "parsing": 2.0, "embedding": 6.0, "indexing": 1.0}


@flow(
    name=INGEST_FLOW,
    task_runner=SettingsDaskTaskRunner(),  # type: ignore[arg-type]
    persist_result=True,
    on_failure=[mark_dead_letter],
    on_crashed=[mark_dead_letter],
)
def ingest_documents(
    paths: list[str],
    tenant: str = "default",
    prune: bool = False,
    names: dict[str, str] | None = None,
) -> IngestReport:
    """Ingests files and folders into the knowledge base; returns a per-document report."""
    started = time.monotonic()
    progress = ProgressReporter(STAGES)
    progress.update("planning", 0, 1, f"Planning {len(paths)} path(s)")
    plan = plan_task(paths, tenant, prune, names)
    reports: list[DocumentReport] = [*plan.rejected, *plan.unchanged]
    documents = _parse(plan.to_index, tenant, progress, reports)
    replacing = {doc.file.doc_id for doc in plan.to_index if doc.replaces}
    _embed_and_index(documents, tenant, replacing, progress, reports)
    if plan.to_remove:
        progress.update("indexing", 0, 1, f"Removing {len(plan.to_remove)} document(s)")
        remove_documents_task(plan.to_remove, tenant)
        reports.extend(removed_report(doc) for doc in plan.to_remove)
    report = build_report(
        reports,
        tenant=tenant,
        collection=get_settings().collection,
        seconds=time.monotonic() - started,
    )
    publish_report_task(report)
    progress.finish(
        f"{report.indexed} indexed, {report.unchanged} unchanged, {report.failed} failed, "
        f"{report.removed} removed"
    )
    return report


def _parse(
    planned: Sequence[PlannedDocument],
    tenant: str,
    progress: ProgressReporter,
    reports: list[DocumentReport],
) -> list[ChunkedDocument]:
    """Parses documents in parallel; a document that fails gets a failed report line."""
    progress.update("parsing", 0, len(planned), f"Parsing {len(planned)} document(s)")
    futures = parse_and_chunk_task.map(list(planned), tenant=unmapped(tenant))
    by_run = {future.task_run_id: doc for future, doc in zip(futures, planned, strict=True)}
    documents: list[ChunkedDocument] = []
    for done, future in enumerate(as_completed(list(futures)), start=1):
        doc = by_run[future.task_run_id]
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, ChunkedDocument) and outcome.chunks:
            documents.append(outcome)
        elif isinstance(outcome, ChunkedDocument):
            reports.append(failed_report(doc.file.source, doc.file.doc_id, _empty(doc)))
        else:
            reports.append(failed_report(doc.file.source, doc.file.doc_id, outcome))
        progress.update("parsing", done, len(planned), f"Parsed {done}/{len(planned)} documents")
    return sorted(documents, key=lambda d: d.source)


def _empty(doc: PlannedDocument) -> Exception:
    return ParseError(FailureReason.EMPTY, f"{doc.file.source}: no text to index")


def _embed_and_index(
    documents: Sequence[ChunkedDocument],
    tenant: str,
    replacing: set[str],
    progress: ProgressReporter,
    reports: list[DocumentReport],
) -> None:
    """Embeds all chunks in coarse batches on Dask and indexes each document once it is whole."""
    settings = get_settings()
    model_id = embedder_model_id(settings)
    total = sum(len(doc.chunks) for doc in documents)
    slots: list[list[tuple[int, int]]] = []
    batches: list[EmbedBatch] = []
    sizes = [len(doc.chunks) for doc in documents]
    for planned in plan_batches(sizes, settings.embed_batch_size, worker_slots()):
        texts = [documents[d].embed_texts[c] for d, lo, hi in planned for c in range(lo, hi)]
        batches.append(EmbedBatch(model_id=model_id, texts=texts))
        slots.append([(d, c) for d, lo, hi in planned for c in range(lo, hi)])

    progress.update("embedding", 0, total, f"Embedding {total} chunks")
    vectors: list[list[list[float] | None]] = [[None] * len(doc.chunks) for doc in documents]
    missing = [len(doc.chunks) for doc in documents]
    futures: list[PrefectFuture[list[list[float]]]] = [
        embed_batch_task.submit(batch, tenant) for batch in batches
    ]
    slots_of = {future.task_run_id: slot for future, slot in zip(futures, slots, strict=True)}
    embedded = indexed = 0
    for future in as_completed(futures):
        batch_vectors = future.result()
        whole: list[IndexItem] = []
        for (doc_index, chunk_index), vector in zip(
            slots_of[future.task_run_id], batch_vectors, strict=True
        ):
            vectors[doc_index][chunk_index] = vector
            missing[doc_index] -= 1
            if missing[doc_index] == 0:
                doc = documents[doc_index]
                done = [v for v in vectors[doc_index] if v is not None]
                whole.append(IndexItem(doc, done, doc.doc_id in replacing))
                vectors[doc_index] = []
        if whole:
            # quote(): Prefect would otherwise walk every float looking for futures.
            label = whole[0].document.source if len(whole) == 1 else f"{len(whole)} documents"
            index_documents_task(quote(whole), tenant, label)  # type: ignore[call-overload]
            reports.extend(indexed_report(item.document) for item in whole)
            indexed += len(whole)
        embedded += len(batch_vectors)
        progress.update(
            "embedding",
            embedded,
            total,
            f"Embedded {embedded}/{total} chunks, indexed {indexed}/{len(documents)} documents",
        )
    progress.update("indexing", indexed, len(documents), f"Indexed {indexed} documents")


if __name__ != "flows.ingest":
    # Prefect loads the entrypoint "flows/ingest.py:ingest_documents" as a top-level module
    # named "ingest", which Dask workers cannot import when they unpickle the run context;
    # hand out the flow of the importable package module instead.
    import flows.ingest as _importable

    ingest_documents = _importable.ingest_documents
