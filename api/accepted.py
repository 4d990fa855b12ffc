"""The 202 answer of every route that starts or restarts a task."""

from __future__ import annotations

from fastapi import Response

from api.schemas import TaskAccepted


def accepted(response: Response, task_id: str, base_url: str | None) -> TaskAccepted:
    """The task id and where to follow it; sets the Location header to the status URL."""
    base = (base_url or "").rstrip("/")
    body = TaskAccepted(
        task_id=task_id,
        status_url=f"{base}/api/tasks/{task_id}",
        events_url=f"{base}/api/tasks/{task_id}/events",
    )
    response.headers["Location"] = body.status_url
    return body
