"""What Prefect knows about flow runs: which are still active, and the dead-letter mark."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Final
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.exceptions import ObjectNotFound

logger = logging.getLogger(__name__)

DEAD_LETTER_TAG: Final = "dead-letter"
#: States of a run that may still read its inputs.
ACTIVE_STATES: Final = (
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CANCELLING,
)
_PAGE = 200


def _pages(client: SyncPrefectClient, flow_run_filter: FlowRunFilter) -> Iterator[FlowRun]:
    """Every flow run matching a filter, page by page."""
    offset = 0
    while True:
        page = client.read_flow_runs(flow_run_filter=flow_run_filter, limit=_PAGE, offset=offset)
        yield from page
        if len(page) < _PAGE:
            return
        offset += len(page)


def active_flow_runs() -> list[FlowRun]:
    """Every flow run that is scheduled, pending, running, paused or cancelling."""
    flow_run_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(ACTIVE_STATES)))
    )
    with get_client(sync_client=True) as client:
        return list(_pages(client, flow_run_filter))


def is_run_active(run_id: str) -> bool:
    """Whether the flow run exists and is still active."""
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
    except (ValueError, ObjectNotFound):
        return False
    return run.state is not None and run.state.type in ACTIVE_STATES


def string_values(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value (flow-run parameters)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_values(key)
            yield from string_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from string_values(item)


def tag_dead_letter(run_id: UUID) -> None:
    """Adds the dead-letter tag to a flow run (read fresh, so no other tag is lost)."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        if DEAD_LETTER_TAG not in run.tags:
            client.update_flow_run(run_id, tags=[*run.tags, DEAD_LETTER_TAG])


def untag_dead_letter(run_id: UUID) -> None:
    """Removes the dead-letter tag from a flow run that is re-queued."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        if DEAD_LETTER_TAG in run.tags:
            client.update_flow_run(run_id, tags=[t for t in run.tags if t != DEAD_LETTER_TAG])


def mark_dead_letter(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """Flow `on_failure`/`on_crashed` hook: a run whose retries are spent joins the dead letters."""
    try:
        tag_dead_letter(flow_run.id)
    except Exception:
        # A hook must never turn a failure into another failure.
        logger.exception("could not tag flow run %s as %s", flow_run.id, DEAD_LETTER_TAG)
    else:
        logger.warning(
            "flow run %s (%s) is a dead letter: %s",
            flow_run.name,
            flow_run.id,
            state.message or state.name,
        )
