"""Per-user limits in Prefect's global concurrency limits, for API processes on many machines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import httpx
from fastapi import HTTPException, status
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectAlreadyExists

from api.limits import PendingRuns, rate_refused, tasks_refused
from api.prefect_tasks import USER_TAG
from core.settings import Settings

logger = logging.getLogger(__name__)

IN_FLIGHT_STATES = (StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING)
# A slot for a task being created is held for one request; the lease frees it if the
# process dies first (Prefect's shortest lease is 60 s).
_SLOT_LEASE_S = 300.0
# Time the rate check may take before it lets the request through unchecked.
_RATE_CHECK_BUDGET_S = 2.0
# Tries to fit a new task beside concurrent requests of the same user before refusing.
_SLOT_ATTEMPTS = 3
# The most runs Prefect's API returns for one read.
_PAGE = 200


def rate_limit_name(user: str, settings: Settings) -> str:
    """Prefect limit of one user's request rate; the settings are part of the name, so a
    changed rate or burst starts a fresh limit instead of reusing the old one."""
    rate, burst = settings.rate_limit_per_minute, settings.rate_limit_burst
    return f"octavius-rate:{rate}pm:{burst}:user:{user}"


def task_slots_limit_name(user: str) -> str:
    """Prefect limit whose slots are the user's tasks being created right now."""
    return f"octavius-tasks:user:{user}"


async def _create_limit(client: PrefectClient, limit: GlobalConcurrencyLimitCreate) -> None:
    # Another request or process may have created it first.
    with contextlib.suppress(ObjectAlreadyExists):
        await client.create_global_concurrency_limit(limit)


async def check_rate(client: PrefectClient, user: str, settings: Settings) -> None:
    """Takes one request from the user's rate limit; 429 when the burst is used up.

    Fails open (with a warning) when Prefect cannot be reached: the limit protects the
    service, it does not decide who may use it.
    """
    name = rate_limit_name(user, settings)
    rate = settings.rate_limit_per_minute
    # Stop waiting after the budget but never cancel the call itself: cancelling requests
    # on a contended httpx pool leaks its connections (encode/httpcore#1093) and wedges the
    # API's Prefect client.
    attempt = asyncio.ensure_future(_take_rate_slot(client, name, settings))
    attempt.add_done_callback(_consume_outcome)
    try:
        await asyncio.wait_for(asyncio.shield(attempt), _RATE_CHECK_BUDGET_S)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == status.HTTP_423_LOCKED:
            # A slot comes back 60/rate seconds after the last accepted request at the latest.
            raise rate_refused(settings, math.ceil(60 / rate)) from exc
        logger.warning("request rate of %s not checked: %s", user, exc)
    except (httpx.HTTPError, TimeoutError) as exc:
        logger.warning("request rate of %s not checked: %r", user, exc)


def _consume_outcome(attempt: asyncio.Future[None]) -> None:
    """Marks an abandoned attempt's exception as seen, so asyncio does not log it."""
    if not attempt.cancelled():
        attempt.exception()


async def _take_rate_slot(client: PrefectClient, name: str, settings: Settings) -> None:
    for _ in range(2):
        response = await client.increment_concurrency_slots(
            names=[name], slots=1, mode="rate_limit"
        )
        if response.json():
            return
        # A limit that does not exist yet answers 200 with no limits and counts nothing.
        await _create_limit(
            client,
            GlobalConcurrencyLimitCreate(
                name=name,
                limit=settings.rate_limit_burst,
                slot_decay_per_second=settings.rate_limit_per_minute / 60,
            ),
        )
    raise RuntimeError(f"Prefect did not keep the concurrency limit {name}")


async def in_flight_run_ids(client: PrefectClient, user: str, limit: int) -> set[str]:
    """Ids of (at most `limit` of) the user's runs that are scheduled, pending or running.

    Only the ids are read from Prefect's answer: validating every run as a FlowRun cost
    about a millisecond per run, on the event loop.
    """
    runs_filter = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[f"{USER_TAG}{user}"]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(IN_FLIGHT_STATES))),
    ).model_dump(mode="json", exclude_unset=True)
    ids: set[str] = set()
    while len(ids) < limit:
        page = min(_PAGE, limit - len(ids))
        response = await client._client.post(
            "/flow_runs/filter",
            json={
                "flow_runs": runs_filter,
                "sort": FlowRunSort.ID_DESC.value,
                "offset": len(ids),
                "limit": page,
            },
        )
        found = [str(run["id"]) for run in response.json()]
        ids.update(found)
        if len(found) < page:
            break
    return ids


async def count_in_flight(client: PrefectClient, user: str) -> int:
    """The user's flow runs that are scheduled, pending, running or cancelling."""
    return await client.count_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"{USER_TAG}{user}"]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(IN_FLIGHT_STATES))),
        )
    )


async def _release_slot(client: PrefectClient, lease: UUID) -> None:
    try:
        await client.release_concurrency_slots_with_lease(lease)
    except (httpx.HTTPError, TimeoutError) as exc:
        logger.warning("task slot lease %s not released (its lease will expire): %r", lease, exc)


async def _take_slot(client: PrefectClient, user: str, settings: Settings) -> UUID | None:
    """A lease on one slot of the user's task-slots limit; None while every slot is held."""
    name = task_slots_limit_name(user)
    for _ in range(2):
        try:
            response = await client.increment_concurrency_slots_with_lease(
                names=[name], slots=1, mode="concurrency", lease_duration=_SLOT_LEASE_S
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == status.HTTP_423_LOCKED:
                return None
            raise
        body = response.json()
        lease = UUID(body["lease_id"])
        if body["limits"]:
            return lease
        # The limit does not exist yet: the lease holds nothing; drop it, create, try again.
        await _release_slot(client, lease)
        await _create_limit(
            client, GlobalConcurrencyLimitCreate(name=name, limit=settings.max_tasks_in_flight)
        )
    raise RuntimeError(f"Prefect did not keep the concurrency limit {name}")


async def _reserve(client: PrefectClient, user: str, settings: Settings, pending: int = 0) -> UUID:
    """A held slot once the user's runs in flight, the slots held and the `pending` tasks
    Prefect cannot count yet fit the maximum."""
    for attempt in range(_SLOT_ATTEMPTS):
        if attempt:
            # Concurrent requests of the user hold slots too: let them finish or back off.
            await asyncio.sleep(random.uniform(0.02, 0.1))
        lease = await _take_slot(client, user, settings)
        if lease is None:
            continue
        try:
            slots, in_flight = await asyncio.gather(
                client.read_global_concurrency_limit_by_name(task_slots_limit_name(user)),
                count_in_flight(client, user),
            )
        except BaseException:
            await _release_slot(client, lease)
            raise
        in_flight += pending
        if in_flight + slots.active_slots <= settings.max_tasks_in_flight:
            return lease
        await _release_slot(client, lease)
        if in_flight >= settings.max_tasks_in_flight:
            break
    raise tasks_refused(settings)


@asynccontextmanager
async def task_slot(
    client: PrefectClient, user: str, settings: Settings, pending: int = 0
) -> AsyncIterator[None]:
    """Holds a slot for one new task of the user while it is created; 429 at the maximum.

    Each request takes a slot of the user's task-slots limit before it counts, then counts
    the runs in flight plus every slot held (its own included). A run exists before its slot
    is released, so concurrent requests of one user, in any API process, never start more
    than max_tasks_in_flight tasks together.
    """
    try:
        lease = await _reserve(client, user, settings, pending)
    except (httpx.HTTPError, TimeoutError) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"cannot count tasks in flight: {exc!r}"
        ) from exc
    try:
        yield
    finally:
        await _release_slot(client, lease)


class _NoBinding:
    """Prefect counts runs by their user tag; a slot needs no record of its run."""

    def bind(self, task_id: str) -> None:
        """Nothing to record."""


class PrefectLimiter:
    """Rate and tasks in flight per user in Prefect's global concurrency limits."""

    def __init__(self, client: PrefectClient, pending: PendingRuns | None = None) -> None:
        """A limiter using the API's Prefect client; `pending` names runs of a user's tasks
        Prefect cannot count yet (this process's claims not pushed; other hosts miss them)."""
        self._client = client
        self._pending = pending

    async def check_rate(self, user: str, settings: Settings) -> None:
        """Takes one request from the user's rate; 429 with Retry-After when it is used up."""
        await check_rate(self._client, user, settings)

    @asynccontextmanager
    async def task_slot(
        self, user: str, settings: Settings, *, rate: bool = False
    ) -> AsyncIterator[_NoBinding]:
        """Holds a slot for one new task of the user (after one request of its rate, with
        `rate`); 429 at max_tasks_in_flight."""
        if rate:
            await self.check_rate(user, settings)
        pending = len(self._pending(user)) if self._pending is not None else 0
        async with task_slot(self._client, user, settings, pending):
            yield _NoBinding()

    async def aclose(self) -> None:
        """Nothing to close: the Prefect client belongs to the app."""
