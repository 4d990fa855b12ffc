"""The 202 answer of every route that starts or restarts a task."""

from __future__ import annotations

from fastapi import Response, status

from api.schemas import TaskAccepted


def _accepted_body(task_id: str, base_url: str | None) -> TaskAccepted:
    base = (base_url or "").rstrip("/")
    return TaskAccepted(
        task_id=task_id,
        status_url=f"{base}/api/tasks/{task_id}",
        events_url=f"{base}/api/tasks/{task_id}/events",
    )


def accepted(response: Response, task_id: str, base_url: str | None) -> TaskAccepted:
    """The task id and where to follow it; sets the Location header to the status URL."""
    body = _accepted_body(task_id, base_url)
    response.headers["Location"] = body.status_url
    return body


def accepted_response(task_id: str, base_url: str | None) -> Response:
    """The same answer as a finished 202 response, for routes that build their own."""
    body = _accepted_body(task_id, base_url)
    return Response(
        body.model_dump_json(),
        status.HTTP_202_ACCEPTED,
        headers={"Location": body.status_url},
        media_type="application/json",
    )
