"""Shapes of the REST API (never raw Prefect or Qdrant objects)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.models import Language


class TaskAccepted(BaseModel):
    """Answer to a POST that started a background task."""

    task_id: str
    status_url: str
    events_url: str


class TaskProgress(BaseModel):
    """Where a running task is."""

    stage: str | None = None
    done: int = 0
    total: int = 0
    percent: float = 0.0
    message: str | None = None


class TaskStatus(BaseModel):
    """A task's state as the chat backend reads it."""

    task_id: str
    kind: str
    state: str = Field(description="Prefect state type, passed through (COMPLETED, FAILED, ...).")
    state_name: str = Field(description="Prefect state name (Running, Retrying, Cached, ...).")
    progress: TaskProgress
    result: dict[str, Any] | None = None
    error: str | None = None
    created: datetime | None
    updated: datetime | None


class SearchHitPublic(BaseModel):
    """One knowledge-base hit."""

    text: str
    score: float
    document: str = Field(description="Source name of the document.")
    doc_id: str
    title: str
    page: int | None = Field(description="First page of the passage, when the format has pages.")
    pages: list[int]
    heading_path: list[str]
    language: Language


class SearchResponse(BaseModel):
    """Answer of GET /api/search."""

    query: str
    hits: list[SearchHitPublic]


class Health(BaseModel):
    """Liveness or readiness answer."""

    status: str
    checks: dict[str, str] = Field(default_factory=dict)
