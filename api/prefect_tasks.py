"""Tasks as Prefect flow runs: start, read, list, cancel and retry them for their owner."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from uuid import UUID

import httpx
from fastapi import HTTPException, status
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterIdempotencyKey,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    Operator,
)
from prefect.client.schemas.objects import Artifact, FlowRun, StateType
from prefect.client.schemas.responses import OrchestrationResult, SetStateStatus
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.exceptions import MissingResult, ObjectNotFound
from prefect.states import AwaitingRetry, Cancelling
from pydantic import BaseModel

from api.claims import Claim, ClaimStore
from api.reservoir import KEY_TAG, Reservoir
from api.schemas import TaskKind, TaskPage, TaskProgress, TaskState, TaskStatus, TaskSummary
from deployments.names import PROGRESS_EVENT
from tasks.runs import DEAD_LETTER_TAG

logger = logging.getLogger(__name__)

USER_TAG: Final = "user:"
KIND_TAG: Final = "kind:"
FINAL_STATES: Final = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)
RETRYABLE_STATES: Final = frozenset({StateType.FAILED, StateType.CRASHED})
IDEMPOTENCY_KEY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


def scoped_idempotency_key(user: str, kind: str, key: str) -> str:
    """The key Prefect stores: per user and kind, so two users' keys never meet."""
    # User ids and kinds never contain "/", so the scoped form cannot be forged by a key.
    return f"{user}/{kind}/{key}"


async def find_task(
    client: PrefectClient, store: ClaimStore | None, *, user: str, kind: str, key: str
) -> str | None:
    """The id of the user's task of this kind started with the idempotency key, if any.

    A claim on a reserved run is found in the claims table before Prefect knows its owner;
    Prefect holds the key as the run's idempotency key (created directly) or as a tag (claimed).
    """
    scoped = scoped_idempotency_key(user, kind, key)
    if store is not None and (claim := store.by_key(scoped)) is not None:
        return claim.run_id
    try:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                operator=Operator.or_,  # type: ignore[call-arg]
                idempotency_key=FlowRunFilterIdempotencyKey(any_=[scoped]),
                tags=FlowRunFilterTags(all_=[f"{KEY_TAG}{scoped}"]),
            ),
            limit=1,
        )
    except httpx.TransportError as exc:
        # Claims are unique per key in the claims table, and Prefect refuses a second run
        # with a key on direct creation: carry on rather than refuse while Prefect is away.
        logger.warning("idempotency key not looked up in Prefect: %r", exc)
        return None
    if runs and f"{USER_TAG}{user}" in runs[0].tags:
        return str(runs[0].id)
    return None


class _SlotHolder(Protocol):
    idempotency_key: str | None

    def bind(self, task_id: str) -> None: ...


@dataclass(frozen=True)
class Started:
    """A task just started (or the one its idempotency key already names) and its parameters."""

    task_id: str
    parameters: dict[str, Any]


# Deployment ids by name, read once per process: a deployment's id only changes when it is
# deleted and registered again, which start_task notices and then reads it afresh.
_deployment_ids: dict[tuple[str, str], UUID] = {}


async def deployment_id_of(client: PrefectClient, deployment: str, *, fresh: bool = False) -> UUID:
    """The id of a deployment by name, cached per process; 503 when it is not registered."""
    key = (str(client.api_url), deployment)
    if fresh or key not in _deployment_ids:
        try:
            found = await client.read_deployment_by_name(deployment)
        except ObjectNotFound as exc:
            _deployment_ids.pop(key, None)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"deployment {deployment} is not registered"
            ) from exc
        _deployment_ids[key] = found.id
    return _deployment_ids[key]


async def start_task(
    client: PrefectClient,
    reservoir: Reservoir | None,
    deployment: str,
    *,
    kind: str,
    user: str,
    parameters: dict[str, Any],
    slot: _SlotHolder,
) -> Started:
    """Starts a task of the deployment for the user; never waits for the run to start.

    It claims a reserved run when one is left (no Prefect round trip: the pusher writes the
    claim to Prefect) and otherwise creates a flow run, tagged with its kind and owner. The
    task takes the user's task slot. With an idempotency key, the task started earlier with
    the same key is handed back.
    """
    key = slot.idempotency_key
    scoped = scoped_idempotency_key(user, kind, key) if key else None
    if reservoir is not None:
        claimed = await reservoir.claim(
            deployment, user=user, kind=kind, parameters=parameters, scoped_key=scoped
        )
        if claimed is not None:
            claim, new = claimed
            if new:
                slot.bind(claim.run_id)
            return Started(claim.run_id, claim.parameters)
    for fresh in (False, True):
        deployment_id = await deployment_id_of(client, deployment, fresh=fresh)
        try:
            run = await client.create_flow_run_from_deployment(
                deployment_id,
                parameters=parameters,
                tags=[f"{KIND_TAG}{kind}", f"{USER_TAG}{user}"],
                idempotency_key=scoped,
            )
        except httpx.HTTPStatusError as exc:
            if fresh or exc.response.status_code != status.HTTP_404_NOT_FOUND:
                raise
            continue
        slot.bind(str(run.id))
        return Started(str(run.id), run.parameters)
    raise AssertionError("unreachable")


async def read_task(
    client: PrefectClient, store: ClaimStore | None, task_id: str, user: str
) -> FlowRun | Claim:
    """The user's task: its claim while Prefect does not have it yet, else its flow run; 404."""
    claim = store.get(task_id) if store is not None else None
    if claim is not None and (claim.pushed is None or claim.error is not None):
        if claim.user != user:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task")
        return claim
    return await read_owned_run(client, task_id, user)


def _claim_fields(claim: Claim) -> dict[str, Any]:
    if claim.error is not None:
        state, name = StateType.FAILED, "Failed"
    elif claim.cancelled:
        state, name = StateType.CANCELLED, "Cancelled"
    else:
        state, name = StateType.SCHEDULED, "Scheduled"
    at = datetime.fromtimestamp(claim.created, UTC)
    return {
        "task_id": claim.run_id,
        "kind": claim.kind,
        "state": state.value,
        "state_name": name,
        "error": claim.error,
        "created": at,
        "updated": at,
    }


def claim_status(claim: Claim) -> TaskStatus:
    """The task view of a claim Prefect does not have yet: scheduled, or cancelled by its owner."""
    return TaskStatus(**_claim_fields(claim), progress=TaskProgress())


async def cancel_claim(store: ClaimStore, claim: Claim) -> TaskStatus | None:
    """Cancels an unpushed claim (the pusher cancels its run); None when it was pushed meanwhile."""
    if claim.cancelled or claim.error is not None:
        state = claim_status(claim).state
        raise HTTPException(status.HTTP_409_CONFLICT, f"task is {state} and cannot be cancelled")
    if not store.cancel(claim.run_id):
        return None
    return claim_status(replace(claim, cancelled=True))


async def read_owned_run(client: PrefectClient, task_id: str, user: str) -> FlowRun:
    """The flow run behind a task id, read fresh, when it belongs to the user; 404 otherwise."""
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


def kind_of(run: FlowRun) -> str:
    """The task kind a flow run was tagged with."""
    return next((t.removeprefix(KIND_TAG) for t in run.tags if t.startswith(KIND_TAG)), "unknown")


def _error_of(run: FlowRun) -> str | None:
    state = run.state
    if state is not None and (state.is_failed() or state.is_crashed()):
        return state.message or state.name
    return None


def _run_fields(run: FlowRun) -> dict[str, Any]:
    """The fields a task status and a task summary both take from the flow run."""
    state = run.state
    return {
        "task_id": str(run.id),
        "kind": kind_of(run),
        "state": state.type.value if state else "PENDING",
        "state_name": state.name if state else "Pending",
        "created": run.created,
        "updated": run.updated,
    }


async def task_status(client: PrefectClient, run: FlowRun) -> TaskStatus:
    """The task view of a flow run: state, progress, result or error."""
    state = run.state
    result: dict[str, Any] | None = None
    error = _error_of(run)
    progress = await read_progress(client, run)
    if state is not None and state.is_completed():
        try:
            value = await state.aresult(raise_on_failure=False)
        except MissingResult:
            # A run marked Completed from outside (an operator, a recovered crash) has no data.
            value = None
        if isinstance(value, BaseModel):
            result = value.model_dump(mode="json")
        elif isinstance(value, dict):
            result = value
        progress = progress.model_copy(update={"percent": 100.0})
    return TaskStatus(**_run_fields(run), progress=progress, result=result, error=error)


class _Cursor(BaseModel):
    """Where a page ended: the last expected start time and the ids already given at it."""

    t: datetime
    x: list[UUID]


def encode_cursor(cursor: _Cursor) -> str:
    """An opaque, URL-safe form of a cursor."""
    return base64.urlsafe_b64encode(cursor.model_dump_json().encode()).decode().rstrip("=")


def decode_cursor(text: str) -> _Cursor:
    """The cursor behind its opaque form; ValueError when encode_cursor did not make it."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return _Cursor.model_validate(json.loads(raw))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("malformed cursor: pass next_cursor of the previous page") from exc


def check_cursor(text: str | None) -> str | None:
    """A query-parameter validator: the cursor unchanged when it decodes, else ValueError."""
    if text is not None:
        decode_cursor(text)
    return text


async def _latest_progress(client: PrefectClient, runs: Sequence[FlowRun]) -> dict[UUID, Artifact]:
    """The newest progress artifact of each run, read in one query."""
    if not runs:
        return {}
    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(
            type=ArtifactFilterType(any_=["progress"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id for run in runs]),
        ),
        sort=ArtifactSort.CREATED_DESC,
        limit=4 * len(runs),
    )
    latest: dict[UUID, Artifact] = {}
    for artifact in artifacts:
        if artifact.flow_run_id is not None:
            latest.setdefault(artifact.flow_run_id, artifact)
    return latest


def _summary(run: FlowRun, artifact: Artifact | None) -> TaskSummary:
    state = run.state
    progress = TaskProgress()
    if artifact is not None and isinstance(artifact.data, int | float):
        progress = TaskProgress(percent=float(artifact.data), message=artifact.description)
    if state is not None and state.is_completed():
        progress = progress.model_copy(update={"percent": 100.0})
    return TaskSummary(**_run_fields(run), progress=progress, error=_error_of(run))


async def list_tasks(
    client: PrefectClient,
    store: ClaimStore | None,
    user: str,
    *,
    kinds: Sequence[TaskKind] = (),
    states: Sequence[TaskState] = (),
    limit: int = 20,
    cursor: str | None = None,
) -> TaskPage:
    """The user's tasks, newest first, one page; results are never read.

    Newest means the latest expected start time: for a task the API created directly, the
    moment it was created; for a task claimed from the reservoir, the far-future time its
    reserved run was scheduled at (Prefect keeps a run's first expected start time), so those
    list first, in the order they were reserved. Claims Prefect does not have yet are merged in
    at that same time. The cursor is keyset-based, so tasks created while a client pages
    through never shift or repeat a page.
    """
    after = decode_cursor(cursor) if cursor else None
    flow_run_filter = FlowRunFilter(
        tags=FlowRunFilterTags(
            all_=[f"{USER_TAG}{user}"],
            any_=[f"{KIND_TAG}{kind}" for kind in kinds] if kinds else None,
        ),
        state=(
            FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in states]))
            if states
            else None
        ),
        expected_start_time=(
            FlowRunFilterExpectedStartTime(before_=after.t) if after is not None else None
        ),
    )
    skip = set(after.x) if after is not None else set()
    runs = await client.read_flow_runs(
        flow_run_filter=flow_run_filter,
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=limit + len(skip) + 1,
    )
    runs = [run for run in runs if run.id not in skip]
    entries: list[tuple[datetime, UUID, FlowRun | Claim]] = [
        (run.expected_start_time or run.created or datetime.min.replace(tzinfo=UTC), run.id, run)
        for run in runs
    ]
    seen = {run.id for run in runs}
    for claim in store.unpushed(user) if store is not None else []:
        claim_id, fields = UUID(claim.run_id), _claim_fields(claim)
        if claim_id in seen or claim_id in skip:
            continue
        if (kinds and claim.kind not in kinds) or (states and fields["state"] not in states):
            continue
        if after is not None and claim.expected > after.t:
            continue
        entries.append((claim.expected, claim_id, claim))
    entries.sort(key=lambda entry: entry[0], reverse=True)
    page, more = entries[:limit], len(entries) > limit
    next_cursor = None
    if more and page:
        last = page[-1][0]
        same = [task_id for at, task_id, _ in page if at == last]
        if after is not None and after.t == last:
            same = [*after.x, *same]
        next_cursor = encode_cursor(_Cursor(t=last, x=same))
    page_runs = [task for _, _, task in page if isinstance(task, FlowRun)]
    progress = await _latest_progress(client, page_runs)
    return TaskPage(
        items=[
            _summary(task, progress.get(task.id))
            if isinstance(task, FlowRun)
            else TaskSummary(**_claim_fields(task), progress=TaskProgress())
            for _, _, task in page
        ],
        next_cursor=next_cursor,
    )


async def cancel_task(client: PrefectClient, run: FlowRun) -> None:
    """Asks Prefect to cancel the run, as `prefect flow-run cancel` does; 409 when final.

    A scheduled run with no process yet goes straight to CANCELLED (Prefect's server does
    that); a running one goes to CANCELLING and its runner or worker kills it.
    """
    if run.state is None or run.state.type in FINAL_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT, _already(run, "cancelled"))
    result: OrchestrationResult[Any] = await client.set_flow_run_state(
        run.id, Cancelling(message="Cancelled by its owner")
    )
    if result.status == SetStateStatus.ABORT:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"task cannot be cancelled: {_reason(result)}"
        )


async def retry_task(client: PrefectClient, run: FlowRun) -> None:
    """Schedules the same failed or crashed run again, as the Prefect UI's Retry does; else 409.

    Task results that persisted (parsing, embedding) come back from the cache.
    """
    if run.state is None or run.state.type not in RETRYABLE_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT, _already(run, "retried"))
    if run.deployment_id is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "task has no deployment to run it again")
    result: OrchestrationResult[Any] = await client.set_flow_run_state(
        run.id, AwaitingRetry(message="Retried by its owner"), force=True
    )
    if result.status == SetStateStatus.ABORT:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task cannot be retried: {_reason(result)}")
    if DEAD_LETTER_TAG in run.tags:
        # Back in the queue: no longer a dead letter (it gets the tag again if it fails again).
        await client.update_flow_run(
            run.id, tags=[tag for tag in run.tags if tag != DEAD_LETTER_TAG]
        )


def _reason(result: OrchestrationResult[Any]) -> str:
    return getattr(result.details, "reason", None) or result.status.value


def _already(run: FlowRun, action: str) -> str:
    state = run.state.type.value if run.state else "unknown"
    return f"task is {state} and cannot be {action}"
