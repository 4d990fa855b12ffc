"""Tasks as Prefect flow runs: start one from a deployment, read one back for its owner."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import HTTPException, status
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel

from api.schemas import TaskProgress, TaskStatus
from deployments.names import PROGRESS_EVENT

USER_TAG = "user:"
KIND_TAG = "kind:"


async def start_task(
    client: PrefectClient,
    deployment: str,
    *,
    kind: str,
    user: str,
    parameters: dict[str, Any],
) -> FlowRun:
    """Creates a flow run of the deployment, tagged with its kind and owner; never waits."""
    try:
        found = await client.read_deployment_by_name(deployment)
    except ObjectNotFound as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"deployment {deployment} is not registered"
        ) from exc
    return await client.create_flow_run_from_deployment(
        found.id, parameters=parameters, tags=[f"{KIND_TAG}{kind}", f"{USER_TAG}{user}"]
    )


async def read_owned_run(client: PrefectClient, task_id: str, user: str) -> FlowRun:
    """The flow run behind a task id when it belongs to the user; 404 otherwise."""
    try:
        run = await client.read_flow_run(UUID(task_id))
    except (ValueError, ObjectNotFound) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task") from exc
    if f"{USER_TAG}{user}" not in run.tags:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task")
    return run


async def read_progress(client: PrefectClient, run: FlowRun) -> TaskProgress:
    """The run's latest progress event, or an empty progress when none was sent yet."""
    page = await client.read_events(
        filter=EventFilter(
            event=EventNameFilter(name=[PROGRESS_EVENT]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]),
        ),
        limit=1,
    )
    if not page.events:
        return TaskProgress()
    return TaskProgress.model_validate(page.events[0].payload)


async def task_status(client: PrefectClient, run: FlowRun) -> TaskStatus:
    """The task view of a flow run: state, progress, result or error."""
    state = run.state
    kind = next((t.removeprefix(KIND_TAG) for t in run.tags if t.startswith(KIND_TAG)), "unknown")
    result: dict[str, Any] | None = None
    error: str | None = None
    progress = await read_progress(client, run)
    if state is not None and state.is_completed():
        value = await state.aresult(raise_on_failure=False)
        if isinstance(value, BaseModel):
            result = value.model_dump(mode="json")
        elif isinstance(value, dict):
            result = value
        progress = progress.model_copy(update={"percent": 100.0})
    elif state is not None and (state.is_failed() or state.is_crashed()):
        error = state.message or state.name
    return TaskStatus(
        task_id=str(run.id),
        kind=kind,
        state=state.type.value if state else "PENDING",
        state_name=state.name if state else "Pending",
        progress=progress,
        result=result,
        error=error,
        created=run.created,
        updated=run.updated,
    )
