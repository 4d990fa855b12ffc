"""Shapes of the REST API (never raw Prefect or Qdrant objects)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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


TaskState = Literal[
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
]
"""Prefect's state types, the values a task's `state` takes."""

TaskKind = Literal["ingest", "audit", "research"]
"""Kinds of background task the API starts."""


class TaskSummary(BaseModel):
    """One task in a listing: a task status without the result."""

    task_id: str
    kind: str
    state: str = Field(description="Prefect state type, passed through (COMPLETED, FAILED, ...).")
    state_name: str = Field(description="Prefect state name (Running, Retrying, Cached, ...).")
    progress: TaskProgress = Field(
        description="Percent and message of the latest progress; stage, done and total are "
        "only filled by GET /api/tasks/{task_id}."
    )
    error: str | None = None
    created: datetime | None
    updated: datetime | None


class TaskPage(BaseModel):
    """Answer of GET /api/tasks: the caller's tasks, newest first."""

    items: list[TaskSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to read the next page; null on the last page."
    )


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


class ErrorDetail(BaseModel):
    """The body of every error answer."""

    detail: str
