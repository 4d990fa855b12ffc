"""Write a document's points to the store: new version first, then the old one removed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff

from core.models import ChunkedDocument, ChunkPayload, Point, StoredDocument
from core.settings import Settings, get_settings
from core.sparse import encode_document
from core.store import TransientStoreError, VectorStore, get_store

_NAMESPACE = uuid.UUID("0d6f3f4e-51a5-4b8e-b1a4-6b6a8a0f6e21")


def point_id(tenant: str, doc_id: str, version: str, chunk_index: int) -> str:
    """Deterministic point id, so a retried or repeated write overwrites."""
    return str(uuid.uuid5(_NAMESPACE, f"{tenant}\x00{doc_id}\x00{version}\x00{chunk_index}"))


def build_points(
    document: ChunkedDocument, vectors: Sequence[Sequence[float]], tenant: str
) -> list[Point]:
    """Points of one document: dense and sparse vectors plus payload per chunk."""
    if len(vectors) != len(document.chunks):
        raise ValueError(f"{len(vectors)} vectors for {len(document.chunks)} chunks")
    points = []
    for chunk, vector in zip(document.chunks, vectors, strict=True):
        payload = ChunkPayload(
            tenant=tenant,
            doc_id=document.doc_id,
            source=document.source,
            title=document.title,
            language=document.language,
            format=document.format,
            version=document.version,
            content_hash=document.content_hash,
            page_count=document.page_count,
            chunk_count=len(document.chunks),
            chunk_index=chunk.chunk_index,
            text=chunk.text,
            pages=chunk.pages,
            heading_path=chunk.heading_path,
            char_start=chunk.char_start,
            char_end=chunk.char_end,
        )
        points.append(
            Point(
                id=point_id(tenant, document.doc_id, document.version, chunk.chunk_index),
                dense=list(vector),
                sparse=encode_document(chunk.text, document.language),
                payload=payload,
            )
        )
    return points


def write_order(points: Sequence[Point]) -> list[Point]:
    """The points with chunk 0 last: the planner reads a document's version from chunk 0, so
    a write that dies part-way leaves the document looking changed, never complete."""
    return sorted(points, key=lambda p: p.payload.chunk_index == 0)


def index_document(
    document: ChunkedDocument,
    vectors: Sequence[Sequence[float]],
    tenant: str,
    replaces: bool = True,
) -> int:
    """Upserts the document's new points, then deletes its older versions; returns the count."""
    return index_documents([IndexItem(document, vectors, replaces)], tenant)


class IndexItem(NamedTuple):
    """A document ready to write: its chunks' vectors, and whether it replaces a version."""

    document: ChunkedDocument
    vectors: Sequence[Sequence[float]]
    replaces: bool


def index_documents(items: Sequence[IndexItem], tenant: str) -> int:
    """Upserts the documents' new points together, then deletes the versions they replace.

    One write for several documents opens the store once per upsert batch rather than once
    per document. Each document's chunk 0 is still written after its other chunks.
    """
    if not items:
        return 0
    settings = get_settings()
    store = get_store(settings)
    points = [
        point for item in items for point in build_points(item.document, item.vectors, tenant)
    ]
    _ensure_collection_once(store, settings, len(points[0].dense))
    store.upsert(write_order(points))
    for item in items:
        if item.replaces:
            store.delete_stale_chunks(tenant, item.document.doc_id, item.document.version)
    return len(points)


_ensured: set[tuple[str, str, int]] = set()


def _ensure_collection_once(store: VectorStore, settings: Settings, dim: int) -> None:
    """Creates the collection on first use; later calls in this process skip the check."""
    key = (settings.qdrant_url or str(settings.store_dir.resolve()), settings.collection, dim)
    if key not in _ensured:
        store.ensure_collection(dim)
        _ensured.add(key)


def remove_documents(documents: Sequence[StoredDocument], tenant: str) -> None:
    """Deletes every point of the given documents."""
    get_store(get_settings()).delete_documents(tenant, [doc.doc_id for doc in documents])


def _is_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    try:
        state.result()
    except TransientStoreError:
        return True
    except Exception:
        return False
    return False


_RETRY: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "retries": 4,
    "retry_delay_seconds": exponential_backoff(backoff_factor=1),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": _is_transient,
}


@task(name="index-documents", task_run_name="index {label}", **_RETRY)
def index_documents_task(items: list[IndexItem], tenant: str, label: str) -> int:
    """Writes the documents' points; retried when the store fails transiently.

    `label` names the run in the UI: the document, or how many there are.
    """
    return index_documents(items, tenant)


@task(name="prune-documents", **_RETRY)
def remove_documents_task(documents: list[StoredDocument], tenant: str) -> None:
    """Removes documents that disappeared from their source folders."""
    remove_documents(documents, tenant)
