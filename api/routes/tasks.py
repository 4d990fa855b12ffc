"""Reading tasks back."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, PrefectDep
from api.prefect_tasks import read_owned_run, task_status
from api.schemas import TaskStatus

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


@router.get(
    "/{task_id}", response_model=TaskStatus, responses={404: {"description": "No such task"}}
)
async def get_task(task_id: str, client: PrefectDep, user: CurrentUser) -> TaskStatus:
    """State, progress and, when done, the result of one of the caller's tasks."""
    run = await read_owned_run(client, task_id, user)
    return await task_status(client, run)
