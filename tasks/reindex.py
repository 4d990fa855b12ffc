"""Rebuild the collection into a new version: plan, prepare, write, compare, check, swap.

Sources: a document whose source file still exists with the same content is parsed and
chunked again (so a chunking change takes effect); any other document (uploads whose file
was cleaned up, files changed or moved since) is re-embedded from the chunk texts the live
version holds, keeping its chunk boundaries. Either way it gets the version fingerprint of
the current model and chunking, so the next reindex sees it as current.

Writes that ingestion makes while a version is built are mirrored to it by the store; the
comparison pass catches what was written before the version existed or raced the rebuild.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from core.embedder import embedder_model_id, get_embedder
from core.models import Chunk, ChunkedDocument, PlannedDocument, SourceFile, StoredDocument
from core.ops_models import ReindexItem, ReindexPlan, ReindexReport, SampleCheck, VersionDiff
from core.search import hybrid_search
from core.settings import Settings, get_settings
from core.store import StoreError, VectorStore, get_store
from core.store.base import CollectionVersion
from core.tokens import get_token_counter
from tasks.chunking import chunking_config, embedding_text
from tasks.documents import parse_and_chunk
from tasks.indexing import build_points, write_order
from tasks.parsing import ParseError, file_sha256
from tasks.planning import index_version
from tasks.runs import is_run_active

logger = logging.getLogger(__name__)

SAMPLE_WORDS = 12
SAMPLE_K = 10


class ReindexError(StoreError):
    """The new version cannot go live (another reindex runs, it never caught up, or it fails
    its checks); the alias stays where it was."""


def current_version(document: StoredDocument, settings: Settings) -> str:
    """The version fingerprint a document gets under the current model and chunking."""
    return index_version(
        document.content_hash, chunking_config(settings).fingerprint(), embedder_model_id(settings)
    )


def plan_reindex(store: VectorStore, settings: Settings, force: bool) -> ReindexPlan:
    """Every stored document, and whether any was indexed with another model or chunking."""
    items: list[ReindexItem] = []
    stale = 0
    for tenant in store.tenants():
        for document in store.documents(tenant).values():
            items.append(ReindexItem(tenant=tenant, document=document))
            if document.mixed_versions or document.version != current_version(document, settings):
                stale += 1
    live = next((v.name for v in store.versions() if v.live), None)
    if force:
        reason = "forced"
    elif stale:
        reason = (
            f"{stale} of {len(items)} documents were indexed with another model, chunking or "
            "pipeline version"
        )
    else:
        reason = "every document matches the current model and chunking"
    return ReindexPlan(
        needed=force or stale > 0, reason=reason, live_version=live, items=items, stale=stale
    )


def start_version(store: VectorStore, dense_dim: int, owner: str | None) -> CollectionVersion:
    """A new empty version marked as building; drops one a failed or killed reindex left."""
    for version in store.versions():
        if not version.building:
            continue
        if version.owner and version.owner != owner and is_run_active(version.owner):
            raise ReindexError(f"reindex run {version.owner} is building {version.name}")
        logger.warning(
            "dropping %s, left half-built by reindex run %s", version.name, version.owner
        )
        store.drop_version(version.name)
    return store.create_version(dense_dim, owner)


def source_unchanged(item: ReindexItem) -> bool:
    """Whether the document's source file still exists with the content that was indexed."""
    path = Path(item.document.source)
    return path.is_absolute() and path.is_file() and file_sha256(path) == item.document.content_hash


def reparse_document(item: ReindexItem) -> ChunkedDocument | None:
    """The document parsed and chunked again from its source file; None when it no longer
    parses (it is then rebuilt from its stored chunks)."""
    document = item.document
    path = Path(document.source)
    planned = PlannedDocument(
        file=SourceFile(
            path=str(path),
            source=document.source,
            doc_id=document.doc_id,
            size=path.stat().st_size,
        ),
        content_hash=document.content_hash,
        version=current_version(document, get_settings()),
    )
    try:
        chunked = parse_and_chunk(planned)
    except ParseError as exc:
        logger.warning("%s no longer parses (%s); reusing its stored chunks", path, exc)
        return None
    return chunked if chunked.chunks else None


def stored_document(
    item: ReindexItem, store: VectorStore, settings: Settings
) -> ChunkedDocument | None:
    """The document rebuilt from the chunks the live version stores, keeping their boundaries;
    None while they are incomplete (an ingestion is writing it: the comparison retries it)."""
    document = item.document
    payloads = sorted(
        (
            p
            for _, p in store.scroll(item.tenant, [document.doc_id])
            if p.version == document.version
        ),
        key=lambda p: p.chunk_index,
    )
    if [p.chunk_index for p in payloads] != list(range(document.chunk_count)):
        return None
    counter = get_token_counter(settings)
    first = payloads[0]
    chunks = [
        Chunk(
            doc_id=p.doc_id,
            chunk_index=p.chunk_index,
            text=p.text,
            pages=p.pages,
            heading_path=p.heading_path,
            char_start=p.char_start,
            char_end=p.char_end,
            token_count=counter.count(p.text),
        )
        for p in payloads
    ]
    return ChunkedDocument(
        doc_id=document.doc_id,
        source=document.source,
        format=first.format,
        content_hash=document.content_hash,
        version=current_version(document, settings),
        title=first.title,
        language=first.language,
        page_count=first.page_count,
        chunks=chunks,
        embed_texts=[embedding_text(chunk, first.title, counter) for chunk in chunks],
    )


class EmbedSlotBatch(BaseModel):
    """Chunk texts of one tenant embedded together, and which document chunk each one is."""

    tenant: str
    slots: list[tuple[int, int]] = Field(description="(document index, chunk index) per text.")
    texts: list[str]


def embedding_batches(
    documents: Sequence[tuple[ChunkedDocument, str]], batch_size: int
) -> list[EmbedSlotBatch]:
    """Coarse batches across documents, never mixing tenants (the cache is keyed per tenant)."""
    batches: list[EmbedSlotBatch] = []
    order = sorted(range(len(documents)), key=lambda i: documents[i][1])
    for index in order:
        document, tenant = documents[index]
        for chunk_index, text in enumerate(document.embed_texts):
            if not batches or batches[-1].tenant != tenant or len(batches[-1].texts) == batch_size:
                batches.append(EmbedSlotBatch(tenant=tenant, slots=[], texts=[]))
            batches[-1].slots.append((index, chunk_index))
            batches[-1].texts.append(text)
    return batches


def write_document(
    version: str, document: ChunkedDocument, vectors: Sequence[Sequence[float]], tenant: str
) -> int:
    """Writes a document into one version and drops its other versions there."""
    store = get_store(get_settings()).at(version)
    points = build_points(document, vectors, tenant)
    store.upsert(write_order(points))
    store.delete_stale_chunks(tenant, document.doc_id, document.version)
    return len(points)


def compare_versions(store: VectorStore, version: str, settings: Settings) -> VersionDiff:
    """Documents the new version lacks, holds in another version or holds incomplete, and
    documents it holds that the live version no longer has."""
    built = store.at(version)
    diff = VersionDiff()
    for tenant in sorted({*store.tenants(), *built.tenants()}):
        live_docs = store.documents(tenant)
        built_docs = built.documents(tenant)
        points = Counter((p.doc_id, p.version) for _, p in built.scroll(tenant))
        per_doc = Counter(doc_id for doc_id, _ in points.elements())
        for doc_id, live in live_docs.items():
            new = built_docs.get(doc_id)
            wanted = current_version(live, settings)
            if (
                new is None
                or new.mixed_versions
                or new.version != wanted
                or points[(doc_id, wanted)] != new.chunk_count
                or per_doc[doc_id] != new.chunk_count
            ):
                diff.to_rebuild.append(ReindexItem(tenant=tenant, document=live))
        gone = sorted({doc_id for doc_id, _ in points} - set(live_docs))
        if gone:
            diff.to_delete[tenant] = gone
    return diff


def delete_from_version(version: str, to_delete: dict[str, list[str]]) -> None:
    """Deletes documents the live version no longer holds from the new version."""
    store = get_store(get_settings()).at(version)
    for tenant, doc_ids in to_delete.items():
        store.delete_documents(tenant, doc_ids)


def sample_queries(version: str, count: int, seed: int = 0) -> SampleCheck:
    """Runs queries made of stored chunks' words against a version: each must answer."""
    settings = get_settings()
    store = get_store(settings).at(version)
    picked = [(tenant, doc_id) for tenant in store.tenants() for doc_id in store.documents(tenant)]
    chosen = random.Random(seed).sample(picked, min(count, len(picked)))
    answered = found = 0
    embedder = get_embedder(settings)
    for tenant, doc_id in chosen:
        chunks = store.scroll(tenant, [doc_id])
        text = " ".join(chunks[0][1].text.split()[:SAMPLE_WORDS])
        hits = hybrid_search(
            text, tenant=tenant, k=SAMPLE_K, store=store, embedder=embedder, settings=settings
        )
        answered += bool(hits)
        found += any(hit.doc_id == doc_id for hit in hits)
    return SampleCheck(queries=len(chosen), answered=answered, own_document_found=found)


def rollback(store: VectorStore) -> tuple[str, str]:
    """Points the alias back at the most recently retired version; returns (from, to)."""
    versions = store.versions()
    live = next((v for v in versions if v.live), None)
    retired = [v for v in versions if not v.live and not v.building and v.retired_at is not None]
    if live is None or not retired:
        raise ReindexError("no previous version to roll back to (none kept, or grace passed)")
    target = max(retired, key=lambda v: (v.retired_at, v.number))
    store.activate(target.name)
    return live.name, target.name


def report_markdown(report: ReindexReport) -> str:
    """The reindex report as markdown for the Prefect UI."""
    lines = [
        f"# Reindex of `{report.collection}`: {report.action}",
        "",
        f"- live version: `{report.live_version}` (previous `{report.previous_version}`)",
        f"- reason: {report.reason}",
        f"- documents: {report.documents} ({report.reparsed} re-parsed, "
        f"{report.from_stored_text} from stored chunk texts), chunks: {report.chunks}",
        f"- catch-up rounds: {report.catch_up_rounds}, documents changed during the rebuild: "
        f"{report.caught_up}",
    ]
    if report.samples is not None:
        s = report.samples
        lines.append(
            f"- sample queries: {s.answered}/{s.queries} answered, own document found for "
            f"{s.own_document_found}"
        )
    lines.append(f"- took {report.seconds:.1f} s")
    return "\n".join(lines)


@task(name="plan-reindex", cache_policy=NO_CACHE)
def plan_reindex_task(force: bool) -> ReindexPlan:
    """Reads every stored document and decides whether a rebuild is needed."""
    settings = get_settings()
    return plan_reindex(get_store(settings), settings, force)


@task(name="embedding-dim", cache_policy=NO_CACHE)
def embedding_dim_task() -> int:
    """The dense size of the configured model, read where the model is loaded (a worker)."""
    return get_embedder(get_settings()).dim


@task(name="start-version", cache_policy=NO_CACHE)
def start_version_task(dense_dim: int, owner: str | None) -> CollectionVersion:
    """Creates the version to build."""
    return start_version(get_store(get_settings()), dense_dim, owner)


@task(
    name="reparse-document", task_run_name="reparse {item.document.source}", cache_policy=NO_CACHE
)
def reparse_document_task(item: ReindexItem) -> ChunkedDocument | None:
    """Parses and chunks one document again (on a worker; it needs no store)."""
    return reparse_document(item)


@task(name="stored-document", task_run_name="reread {item.document.source}", cache_policy=NO_CACHE)
def stored_document_task(item: ReindexItem) -> ChunkedDocument | None:
    """Reads one document's stored chunks back (in the flow's process, next to the store)."""
    settings = get_settings()
    return stored_document(item, get_store(settings), settings)


@task(
    name="write-document",
    task_run_name="write {document.source}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=2,
)
def write_document_task(
    version: str, document: ChunkedDocument, vectors: list[list[float]], tenant: str
) -> int:
    """Writes one document into the version being built."""
    return write_document(version, document, vectors, tenant)


@task(name="compare-versions", cache_policy=NO_CACHE)
def compare_versions_task(version: str) -> VersionDiff:
    """Lists what the new version still lacks compared with the live one."""
    settings = get_settings()
    return compare_versions(get_store(settings), version, settings)


@task(name="delete-from-version", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def delete_from_version_task(version: str, to_delete: dict[str, list[str]]) -> None:
    """Removes documents deleted from the live version during the rebuild."""
    delete_from_version(version, to_delete)


@task(name="sample-queries", cache_policy=NO_CACHE)
def sample_queries_task(version: str, count: int) -> SampleCheck:
    """Checks that the new version answers queries."""
    return sample_queries(version, count)


@task(name="activate-version", cache_policy=NO_CACHE)
def activate_task(version: str) -> None:
    """Swaps the alias to the new version."""
    get_store(get_settings()).activate(version)


@task(name="abandon-version", cache_policy=NO_CACHE)
def abandon_version_task(version: str) -> None:
    """Drops a version that will not go live."""
    get_store(get_settings()).drop_version(version)


@task(name="rollback-version", cache_policy=NO_CACHE)
def rollback_task() -> tuple[str, str]:
    """Points the alias back at the previous version."""
    return rollback(get_store(get_settings()))


@task(name="publish-reindex-report", cache_policy=NO_CACHE)
def publish_reindex_report_task(report: ReindexReport) -> None:
    """Attaches the report to the flow run as a markdown artifact."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        markdown=report_markdown(report), key="reindex-report", description="Reindex report"
    )
