"""A task's progress and state changes as Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.claims import Claim
from api.deps import ClaimsDep, CurrentUser, PrefectDep, SettingsDep
from api.events import EventBroker, Overflow, RunEvent, follow_run
from api.prefect_tasks import read_task

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


async def _broker(request: Request) -> EventBroker:
    broker: EventBroker = request.app.state.events
    return broker


BrokerDep = Annotated[EventBroker, Depends(_broker)]

_STREAM_DOC = (
    "`text/event-stream`. Each message: `id` (the Prefect event id), `event` (`progress` with "
    "`{stage, done, total, percent, message}`, or `state` with `{state, state_name, message?}`), "
    "`data` (JSON). The stream ends after the final state (COMPLETED, FAILED, CRASHED, "
    "CANCELLED). `Last-Event-ID` resumes after that event. A reader too slow to keep up gets "
    "`event: overflow` and the stream closes; reconnecting with `Last-Event-ID` resumes."
)


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping")


async def _messages(events: AsyncIterator[RunEvent | Overflow]) -> AsyncIterator[ServerSentEvent]:
    async for event in events:
        if isinstance(event, Overflow):
            yield ServerSentEvent(data=json.dumps({"detail": event.detail}), event="overflow")
        else:
            yield ServerSentEvent(data=event.to_json(), event=event.kind, id=event.id)


@router.get(
    "/{task_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": _STREAM_DOC},
        404: {"description": "No such task"},
    },
)
async def task_events(
    task_id: str,
    client: PrefectDep,
    store: ClaimsDep,
    broker: BrokerDep,
    settings: SettingsDep,
    user: CurrentUser,
    last_event_id: Annotated[
        str | None, Header(description="Resume after this event (sent by EventSource).")
    ] = None,
) -> EventSourceResponse:
    """Progress and state changes of one of the caller's tasks, as they happen, until final."""
    # A claim Prefect does not have yet streams from its reserved run, which it becomes.
    task = await read_task(client, store, task_id, user)
    run_id = task.run_id if isinstance(task, Claim) else str(task.id)
    return EventSourceResponse(
        _messages(follow_run(client, broker, run_id, last_event_id)),
        ping=settings.sse_keepalive_s,
        ping_message_factory=_ping,
    )
