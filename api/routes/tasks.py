"""The caller's tasks: list, read, cancel, retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import AfterValidator

from api.accepted import accepted
from api.claims import Claim
from api.deps import ClaimsDep, CurrentUser, PrefectDep, RetrySlot, SettingsDep
from api.prefect_tasks import (
    cancel_claim,
    cancel_task,
    check_cursor,
    claim_status,
    list_tasks,
    read_owned_run,
    read_task,
    retry_task,
    task_status,
)
from api.schemas import TaskAccepted, TaskKind, TaskPage, TaskState, TaskStatus

router = APIRouter(prefix="/api/tasks", tags=["tasks"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such task (or another user's)"}
}


@router.get("", response_model=TaskPage)
async def get_tasks(
    client: PrefectDep,
    store: ClaimsDep,
    user: CurrentUser,
    kind: Annotated[list[TaskKind] | None, Query(description="Only these kinds.")] = None,
    state: Annotated[
        list[TaskState] | None, Query(description="Only these Prefect state types.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Tasks per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(max_length=4096, description="next_cursor of the previous page."),
        AfterValidator(check_cursor),
    ] = None,
) -> TaskPage:
    """The caller's tasks, newest first, without results."""
    return await list_tasks(
        client, store, user, kinds=kind or (), states=state or (), limit=limit, cursor=cursor
    )


@router.get("/{task_id}", response_model=TaskStatus, responses=_NOT_FOUND)
async def get_task(
    task_id: str, client: PrefectDep, store: ClaimsDep, user: CurrentUser
) -> TaskStatus:
    """State, progress and, when done, the result of one of the caller's tasks."""
    task = await read_task(client, store, task_id, user)
    if isinstance(task, Claim):
        return claim_status(task)
    return await task_status(client, task)


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskStatus,
    responses={**_NOT_FOUND, 409: {"description": "The task already ended"}},
)
async def cancel(
    task_id: str, client: PrefectDep, store: ClaimsDep, user: CurrentUser
) -> TaskStatus:
    """Cancels a scheduled or running task; answers its state (CANCELLING or CANCELLED)."""
    task = await read_task(client, store, task_id, user)
    if isinstance(task, Claim):
        cancelled = await cancel_claim(store, task)
        if cancelled is not None:
            return cancelled
    run = await read_owned_run(client, task_id, user)
    await cancel_task(client, run)
    return await task_status(client, await read_owned_run(client, task_id, user))


@router.post(
    "/{task_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses={**_NOT_FOUND, 409: {"description": "The task is not failed or crashed"}},
)
async def retry(
    task_id: str,
    response: Response,
    client: PrefectDep,
    store: ClaimsDep,
    settings: SettingsDep,
    slot: RetrySlot,
) -> TaskAccepted:
    """Runs a failed or crashed task again under the same id, reusing its cached steps."""
    user = slot.user
    task = await read_task(client, store, task_id, user)
    if isinstance(task, Claim):
        state = claim_status(task).state
        raise HTTPException(status.HTTP_409_CONFLICT, f"task is {state} and cannot be retried")
    run = task
    await retry_task(client, run)
    slot.bind(str(run.id))  # in flight again: it counts against the user's cap
    return accepted(response, str(run.id), settings.api_base_url)
