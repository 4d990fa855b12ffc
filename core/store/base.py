"""The vector-store contract both engines implement, its errors and shared helpers."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, Field

from core.models import ChunkPayload, Point, SearchHit, SparseVector, StoredDocument

DENSE = "dense"
SPARSE = "sparse"
#: Payload fields with a keyword index; "tenant" is also the engines' tenant key.
KEYWORD_FIELDS: tuple[str, ...] = ("tenant", "doc_id", "language", "source")
INTEGER_FIELDS: tuple[str, ...] = ("chunk_index",)
#: Payload fields `documents()` reads from each document's first chunk.
DOCUMENT_FIELDS: list[str] = ["doc_id", "source", "version", "content_hash", "chunk_count"]
SCROLL_PAGE = 1024

T = TypeVar("T")

logger = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The vector store failed or is misused."""


class CollectionMissingError(StoreError):
    """The collection was written to before `ensure_collection` created it."""


class TransientStoreError(StoreError):
    """A failure that may pass if the operation is run again later (worth a task retry)."""


class StoreBusyError(TransientStoreError, TimeoutError):
    """The embedded store's cross-process lock was not free in time."""


class StoreUnavailableError(StoreError):
    """The store cannot serve requests (readiness check failed)."""


class CollectionVersion(BaseModel):
    """One physical version of the collection and its role behind the alias."""

    name: str = Field(description="Physical collection (or shard directory) name.")
    number: int = Field(ge=1)
    live: bool = Field(description="The alias points to it: searches and writes go there.")
    building: bool = Field(
        description="A reindex is building it: writes to the live version are mirrored to it."
    )
    owner: str | None = Field(default=None, description="Flow run id of the reindex building it.")
    created_at: datetime | None = None
    retired_at: datetime | None = Field(
        default=None, description="When the alias left it; it is kept for a grace period."
    )


@runtime_checkable
class VectorStore(Protocol):
    """The knowledge-base collection: chunks with dense and sparse vectors, per tenant."""

    def ensure_collection(self, dense_dim: int) -> None:
        """Create the collection behind its alias if it does not exist yet (idempotent)."""
        ...

    def upsert(self, points: Sequence[Point]) -> None:
        """Write points in bounded batches; an id written again is overwritten."""
        ...

    def documents(self, tenant: str) -> dict[str, StoredDocument]:
        """The tenant's indexed documents by doc_id, read from their first chunks."""
        ...

    def delete_stale_chunks(self, tenant: str, doc_id: str, keep_version: str) -> None:
        """Delete the document's points whose version is not `keep_version`."""
        ...

    def delete_documents(self, tenant: str, doc_ids: Sequence[str]) -> None:
        """Delete every point of the given documents of a tenant."""
        ...

    def search_dense(
        self,
        vector: Sequence[float],
        *,
        tenant: str,
        k: int,
        doc_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """The tenant's `k` chunks nearest to a dense vector, best first."""
        ...

    def search_sparse(
        self,
        vector: SparseVector,
        *,
        tenant: str,
        k: int,
        doc_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """The tenant's `k` best BM25 matches of a sparse query vector, best first."""
        ...

    def scroll(
        self, tenant: str, doc_ids: Sequence[str] | None = None
    ) -> list[tuple[str, ChunkPayload]]:
        """Every point id and payload of a tenant, optionally of some documents only."""
        ...

    def tenants(self) -> list[str]:
        """Every tenant with at least one indexed document, sorted."""
        ...

    def versions(self) -> list[CollectionVersion]:
        """Every physical version of the collection, oldest first."""
        ...

    def create_version(self, dense_dim: int, owner: str | None = None) -> CollectionVersion:
        """Create the next physical version, empty, and mark it as building."""
        ...

    def at(self, version: str) -> VectorStore:
        """A store bound to one physical version (no alias, no mirrored writes)."""
        ...

    def activate(self, version: str) -> None:
        """Point the alias at `version` atomically; the previous live version is retired."""
        ...

    def drop_version(self, version: str) -> None:
        """Delete a physical version that the alias does not point to."""
        ...

    def count(self, tenant: str | None = None) -> int:
        """The number of points of a tenant, or of the whole collection."""
        ...

    def ping(self) -> None:
        """Return when the store is usable; raise `StoreUnavailableError` otherwise."""
        ...

    def close(self) -> None:
        """Release what the store holds (connections); it is not used afterwards."""
        ...


def physical_name(alias: str, version: int = 1) -> str:
    """The versioned collection (or shard directory) name an alias points to."""
    return f"{alias}_v{version}"


def building_alias(alias: str) -> str:
    """The second alias that names the version a reindex is building."""
    return f"{alias}__building"


def version_number(alias: str, name: str) -> int | None:
    """The version number of a physical name of `alias`, or None for another name."""
    found = re.fullmatch(rf"{re.escape(alias)}_v(\d+)", name)
    return int(found.group(1)) if found else None


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of `items` with at most `size` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def payload_of(point: Point) -> dict[str, Any]:
    """The JSON payload stored with a point."""
    return point.payload.model_dump(mode="json")


def hit_from(point_id: object, score: float, payload: Mapping[str, Any]) -> SearchHit:
    """A search hit from an engine's point id, score and payload."""
    return SearchHit(
        point_id=str(point_id),
        score=float(score),
        text=payload["text"],
        doc_id=payload["doc_id"],
        source=payload["source"],
        title=payload["title"],
        pages=payload.get("pages", []),
        heading_path=payload.get("heading_path", []),
        chunk_index=payload["chunk_index"],
        language=payload["language"],
    )


def documents_from(payloads: Sequence[Mapping[str, Any]]) -> dict[str, StoredDocument]:
    """The document manifest from first-chunk payloads, sorted by doc_id."""
    found = sorted(
        (StoredDocument.model_validate(payload) for payload in payloads),
        key=lambda d: (d.doc_id, d.version),
    )
    documents: dict[str, StoredDocument] = {}
    for document in found:
        if document.doc_id in documents:
            # A write that died between "new version written" and "old version deleted".
            logger.warning(
                "document %s is stored in two versions (%s, %s)",
                document.doc_id,
                documents[document.doc_id].version,
                document.version,
            )
            documents[document.doc_id].mixed_versions = True
            continue
        documents[document.doc_id] = document
    return documents
