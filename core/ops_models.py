"""Typed results of the operations flows: reindex and cleanup."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from core.models import StoredDocument


class ReindexItem(BaseModel):
    """One stored document a reindex rebuilds."""

    tenant: str
    document: StoredDocument


class ReindexPlan(BaseModel):
    """Whether the collection must be rebuilt, and from which documents."""

    needed: bool
    reason: str
    live_version: str | None
    items: list[ReindexItem]
    stale: int = Field(ge=0, description="Documents indexed with another model or chunking.")


class VersionDiff(BaseModel):
    """What the version being built lacks compared with the live one."""

    to_rebuild: list[ReindexItem] = Field(default_factory=list)
    to_delete: dict[str, list[str]] = Field(
        default_factory=dict, description="Per tenant, documents the live version no longer has."
    )

    @property
    def empty(self) -> bool:
        """Whether both versions hold the same documents, complete."""
        return not self.to_rebuild and not any(self.to_delete.values())


class SampleCheck(BaseModel):
    """Sample queries run against a version before it goes live."""

    queries: int = Field(ge=0)
    answered: int = Field(ge=0, description="Queries with at least one hit.")
    own_document_found: int = Field(
        ge=0, description="Queries (made from a chunk's words) whose document was among the hits."
    )


class ReindexReport(BaseModel):
    """Result of a reindex run."""

    action: Literal["skipped", "reindexed", "rolled_back"]
    collection: str
    live_version: str | None
    previous_version: str | None
    reason: str
    documents: int = 0
    chunks: int = 0
    reparsed: int = Field(default=0, description="Documents re-parsed from their source file.")
    from_stored_text: int = Field(
        default=0, description="Documents re-embedded from the chunk texts the store held."
    )
    catch_up_rounds: int = 0
    caught_up: int = Field(default=0, description="Documents that changed during the rebuild.")
    samples: SampleCheck | None = None
    seconds: float = 0.0


class CleanupKind(StrEnum):
    """What a cleanup item is."""

    UPLOAD = "upload"
    RESULT = "result"
    ORPHAN_DOCUMENT = "orphan_document"
    COLLECTION_VERSION = "collection_version"
    RATE_LIMIT = "rate_limit"
    RESERVED_RUN = "reserved_run"


class CleanupItem(BaseModel):
    """One thing cleanup removed, or would remove in a dry run."""

    kind: CleanupKind
    target: str = Field(description="Path, collection version, document or limit name.")
    detail: str = ""
    bytes: int = 0


class CleanupReport(BaseModel):
    """Result of a cleanup run."""

    dry_run: bool
    removed: list[CleanupItem]
    kept: list[CleanupItem] = Field(
        default_factory=list, description="Old items kept because a task still uses them."
    )
    errors: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    def count(self, kind: CleanupKind) -> int:
        """How many items of one kind were removed (or would be)."""
        return sum(1 for item in self.removed if item.kind is kind)
