"""Typed models shared by flows, tasks, the store, the CLI and the API."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

Language = Literal["es", "en", "other"]


class DocumentFormat(StrEnum):
    """File formats ingestion understands."""

    PDF = "pdf"
    DOCX = "docx"
    MARKDOWN = "markdown"
    HTML = "html"
    TEXT = "text"


class FailureReason(StrEnum):
    """Why a document could not be ingested."""

    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    EMPTY = "empty"
    NO_TEXT = "no_text"
    UNSUPPORTED = "unsupported"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"


class Block(BaseModel):
    """One heading or paragraph of a parsed document, with where it sits."""

    kind: Literal["heading", "paragraph"]
    text: str
    level: int = Field(default=0, ge=0, le=6, description="Heading level; 0 for paragraphs.")
    page: int | None = Field(
        default=None, ge=1, description="1-based page, when the format has pages."
    )
    start: int = Field(ge=0, description="Offset of the block in ParsedDocument.text.")


class ParsedDocument(BaseModel):
    """A document reduced to structured text."""

    doc_id: str
    source: str
    format: DocumentFormat
    content_hash: str
    title: str
    language: Language
    page_count: int = Field(ge=1)
    text: str = Field(description="Blocks joined by blank lines; offsets point into it.")
    blocks: list[Block]


class Chunk(BaseModel):
    """A piece of a document sized for the embedding model."""

    doc_id: str
    chunk_index: int = Field(ge=0)
    text: str
    pages: list[int] = Field(default_factory=list)
    heading_path: list[str] = Field(default_factory=list)
    char_start: int = Field(ge=0)
    char_end: int = Field(ge=0)
    token_count: int = Field(ge=0)


class SparseVector(BaseModel):
    """A sparse (BM25-style) vector: parallel index and value lists."""

    indices: list[int]
    values: list[float]


class ChunkPayload(BaseModel):
    """What every stored point carries besides its vectors."""

    tenant: str
    doc_id: str
    source: str
    title: str
    language: Language
    format: DocumentFormat
    version: str = Field(description="Fingerprint of content hash, chunking config and model.")
    content_hash: str
    page_count: int
    chunk_count: int
    chunk_index: int
    text: str
    pages: list[int]
    heading_path: list[str]
    char_start: int
    char_end: int


class Point(BaseModel):
    """One point to upsert: deterministic id, dense and sparse vectors, payload."""

    id: str
    dense: list[float]
    sparse: SparseVector
    payload: ChunkPayload


class StoredDocument(BaseModel):
    """What the store knows of one indexed document (from its first chunk)."""

    doc_id: str
    source: str
    version: str
    content_hash: str
    chunk_count: int
    mixed_versions: bool = Field(
        default=False,
        description="Points of two versions are stored (a write died before the old one was "
        "deleted); the next ingestion re-indexes it.",
    )


class SearchHit(BaseModel):
    """One knowledge-base hit."""

    point_id: str
    score: float
    text: str
    doc_id: str
    source: str
    title: str
    pages: list[int]
    heading_path: list[str]
    chunk_index: int
    language: Language


class DocumentStatus(StrEnum):
    """Outcome of one document in an ingestion run."""

    INDEXED = "indexed"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    REMOVED = "removed"


class DocumentReport(BaseModel):
    """Per-document line of an ingestion report."""

    source: str
    doc_id: str
    status: DocumentStatus
    title: str | None = None
    language: Language | None = None
    pages: int = 0
    chunks: int = 0
    reason: FailureReason | None = None
    error: str | None = None


class IngestReport(BaseModel):
    """Result of an ingestion flow run."""

    tenant: str
    collection: str
    documents: list[DocumentReport]
    indexed: int
    unchanged: int
    failed: int
    removed: int
    chunks_embedded: int
    seconds: float


class SourceFile(BaseModel):
    """A file to ingest and the identity it is stored under."""

    path: str
    source: str = Field(description="Name the document is known by (path, or upload name).")
    doc_id: str
    size: int = Field(ge=0)


class PlannedDocument(BaseModel):
    """A file whose content is new or changed, with the index version it will get."""

    file: SourceFile
    content_hash: str
    version: str
    replaces: bool = Field(
        default=False, description="Points of an earlier version are stored and must go."
    )


class ChunkedDocument(BaseModel):
    """A parsed document's metadata and chunks, ready to embed (crosses Dask)."""

    doc_id: str
    source: str
    format: DocumentFormat
    content_hash: str
    version: str
    title: str
    language: Language
    page_count: int
    chunks: list[Chunk]
    embed_texts: list[str] = Field(description="Per chunk: the text given to the embedder.")
