"""Task event streams: one Prefect event subscription per process, fanned out per flow run.

The broker keeps a short per-run memory of what it saw because Prefect persists events in
batches (every few seconds): a stream that reads history right after an event went by still
finds it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import State
from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import (
    EventFilter,
    EventIDFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventOrder,
    EventResourceFilter,
)
from pydantic import BaseModel, ValidationError

from api.schemas import TaskProgress
from deployments.names import PROGRESS_EVENT, RESERVED_STATE

logger = logging.getLogger(__name__)

FLOW_RUN = "prefect.flow-run."
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
# Flow-run events that are not state changes.
_NOT_STATES = ["prefect.flow-run.heartbeat"]
# Idle streams re-read history and the run's state this often, to recover anything a lost
# Prefect connection or the persister's batching hid from the live feed.
RECHECK_S = 30.0
# A flow's last progress event can reach Prefect just after its final state; a stream that sees
# the final state live waits this long for stragglers so the last message is the final state.
FINAL_GRACE_S = 0.5
# How far before the newest event already sent a history re-read starts.
_REREAD_MARGIN = timedelta(minutes=2)
_PAGE = 50  # Prefect's largest page of events
# Prefect persists events in batches (every 5 s by default): what went by while the broker was
# disconnected shows up in history only after that, so streams re-read history again this late.
PERSIST_LAG_S = 10.0


class TaskStateChange(BaseModel):
    """A task's new state, as the event stream sends it."""

    state: str
    state_name: str
    message: str | None = None


@dataclass(frozen=True)
class RunEvent:
    """One progress report or state change of a flow run."""

    id: str
    occurred: datetime
    kind: Literal["progress", "state"]
    data: TaskProgress | TaskStateChange

    @property
    def final(self) -> bool:
        """Whether this is the run's final state."""
        return isinstance(self.data, TaskStateChange) and self.data.state in FINAL_STATES

    def to_json(self) -> str:
        """The message body: the progress fields, or state, state_name and message if any."""
        return self.data.model_dump_json(exclude_none=self.kind == "state")


@dataclass(frozen=True)
class Overflow:
    """The stream's reader fell too far behind; it was dropped and should reconnect."""

    detail: str = "client too slow; reconnect with Last-Event-ID to resume"


def run_event(event: Event) -> RunEvent | None:
    """The stream's view of a Prefect event: progress, a flow-run state change, or None."""
    if event.event == PROGRESS_EVENT:
        try:
            data: TaskProgress | TaskStateChange = TaskProgress.model_validate(event.payload)
        except ValidationError:
            logger.warning("ignoring malformed progress event %s", event.id)
            return None
        return RunEvent(str(event.id), event.occurred, "progress", data)
    state_type = event.resource.get("prefect.state-type")
    if not event.event.startswith(FLOW_RUN) or not state_type:
        return None
    validated: dict[str, Any] = event.payload.get("validated_state") or {}
    if (validated.get("name") or event.resource.get("prefect.state-name")) == RESERVED_STATE:
        return None  # the run's life before a task claimed it
    data = TaskStateChange(
        state=validated.get("type") or state_type,
        state_name=validated.get("name") or event.resource.get("prefect.state-name") or "",
        message=validated.get("message") or event.resource.get("prefect.state-message") or None,
    )
    return RunEvent(str(event.id), event.occurred, "state", data)


def state_event(state: State) -> RunEvent:
    """The state-change event of a run's current state (Prefect gives it the state's id)."""
    data = TaskStateChange(
        state=state.type.value, state_name=state.name or "", message=state.message or None
    )
    return RunEvent(str(state.id), state.timestamp, "state", data)


class Subscription:
    """Live events of one flow run for one stream, bounded so a slow reader cannot grow memory."""

    def __init__(self, limit: int) -> None:
        self._items: deque[RunEvent] = deque()
        self._limit = limit
        self._wake = asyncio.Event()
        self.overflowed = False
        self._resync = False

    def push(self, event: RunEvent) -> None:
        """Queues a live event; past the limit the subscription is marked overflowed."""
        if self.overflowed:
            return
        if len(self._items) >= self._limit:
            self.overflowed = True
            self._items.clear()
        else:
            self._items.append(event)
        self._wake.set()

    def request_resync(self) -> None:
        """Asks the reader to re-read history: live events may have been missed."""
        self._resync = True
        self._wake.set()

    async def wait(self, timeout: float) -> bool:
        """Waits for events, an overflow or a resync request; False when the timeout passed."""
        if self._items or self._resync or self.overflowed:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
            return True
        return False

    def take(self) -> list[RunEvent]:
        """The queued events, oldest first, leaving the queue empty."""
        items = list(self._items)
        self._items.clear()
        self._wake.clear()
        return items

    def take_resync(self) -> bool:
        """Whether a resync was requested since the last call."""
        resync, self._resync = self._resync, False
        if not self._items:
            self._wake.clear()
        return resync


class EventBroker:
    """One Prefect event subscription for the process, fanned out to streams by flow-run id."""

    def __init__(
        self,
        *,
        queue_limit: int = 256,
        recent_runs: int = 1000,
        recent_per_run: int = 32,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._recent: OrderedDict[str, deque[RunEvent]] = OrderedDict()
        self._queue_limit = queue_limit
        self._recent_runs = recent_runs
        self._recent_per_run = recent_per_run
        self._backoff_s = backoff_s
        self._task: asyncio.Task[None] | None = None
        self._late_resync: asyncio.TimerHandle | None = None
        self.connected = False
        self.connections = 0
        self.failures = 0

    async def __aenter__(self) -> EventBroker:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        """Starts following Prefect's event stream in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="octavius-event-broker")

    async def stop(self) -> None:
        """Stops following Prefect's event stream."""
        task, self._task = self._task, None
        if self._late_resync is not None:
            self._late_resync.cancel()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @contextlib.contextmanager
    def subscribe(self, flow_run_id: str) -> Iterator[Subscription]:
        """A subscription to one flow run's live events, removed on exit."""
        subscription = Subscription(self._queue_limit)
        self._subscriptions.setdefault(flow_run_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscriptions = self._subscriptions.get(flow_run_id, set())
            subscriptions.discard(subscription)
            if not subscriptions:
                self._subscriptions.pop(flow_run_id, None)

    def recent(self, flow_run_id: str) -> list[RunEvent]:
        """The last events this process saw for a flow run, in arrival order."""
        return list(self._recent.get(flow_run_id, ()))

    def publish(self, event: Event) -> None:
        """Hands one Prefect event to the streams of its flow run."""
        converted = run_event(event)
        if converted is None or not event.resource.id.startswith(FLOW_RUN):
            return
        flow_run_id = event.resource.id.removeprefix(FLOW_RUN)
        recent = self._recent.get(flow_run_id)
        if recent is None:
            recent = self._recent[flow_run_id] = deque(maxlen=self._recent_per_run)
            while len(self._recent) > self._recent_runs:
                self._recent.popitem(last=False)
        elif any(seen.id == converted.id for seen in recent):
            return  # replayed by a reconnection's backfill
        else:
            self._recent.move_to_end(flow_run_id)
        recent.append(converted)
        for subscription in list(self._subscriptions.get(flow_run_id, ())):
            subscription.push(converted)

    def _resync_all(self) -> None:
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.request_resync()

    async def _follow(self) -> None:
        low, high = self._backoff_s
        delay = low
        live_filter = EventFilter(
            event=EventNameFilter(prefix=[FLOW_RUN, PROGRESS_EVENT], exclude_name=_NOT_STATES),
            resource=EventResourceFilter(id_prefix=[FLOW_RUN]),
        )
        while True:
            try:
                async with get_events_subscriber(
                    filter=live_filter.model_copy(deep=True),
                    # Every drop surfaces here, so that streams learn to re-read history.
                    reconnection_attempts=0,
                    reconnect_on_clean_close=True,
                ) as events:
                    self.connected = True
                    self.connections += 1
                    delay = low
                    logger.info("following Prefect's event stream")
                    # What happened while disconnected is only in history, some of it later.
                    self._resync_all()
                    if self._late_resync is not None:
                        self._late_resync.cancel()
                    self._late_resync = asyncio.get_running_loop().call_later(
                        PERSIST_LAG_S, self._resync_all
                    )
                    async for event in events:
                        self.publish(event)
                logger.warning("Prefect's event stream ended; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                logger.warning(
                    "Prefect's event stream is unavailable (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
            finally:
                self.connected = False
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, high)


def _history_filter(
    flow_run_id: str, since: datetime | None, event_id: UUID | None = None
) -> EventFilter:
    until = datetime.now(UTC) + timedelta(days=1)
    occurred = (
        EventOccurredFilter(since=since, until=until)
        if since is not None
        else EventOccurredFilter(until=until)
    )
    return EventFilter(
        occurred=occurred,
        event=EventNameFilter(prefix=[FLOW_RUN, PROGRESS_EVENT], exclude_name=_NOT_STATES),
        resource=EventResourceFilter(id=[f"{FLOW_RUN}{flow_run_id}"]),
        id=EventIDFilter(id=[event_id] if event_id is not None else []),
        order=EventOrder.ASC,
    )


async def read_history(
    client: PrefectClient, broker: EventBroker, flow_run_id: str, since: datetime | None
) -> list[RunEvent]:
    """A run's events since a time, persisted or only seen live so far, oldest first."""
    page = await client.read_events(filter=_history_filter(flow_run_id, since), limit=_PAGE)
    events = list(page.events)
    while page.next_page is not None and page.events:
        page = await client.read_events_page(str(page.next_page))
        events.extend(page.events)
    found: dict[str, RunEvent] = {}
    for event in events:
        converted = run_event(event)
        if converted is not None:
            found.setdefault(converted.id, converted)
    for converted in broker.recent(flow_run_id):
        if since is None or converted.occurred >= since:
            found.setdefault(converted.id, converted)
    return sorted(found.values(), key=lambda e: e.occurred)


async def _occurred_of(
    client: PrefectClient, broker: EventBroker, flow_run_id: str, event_id: str
) -> datetime | None:
    """When a run's event happened, or None when the id is not one of its events."""
    for seen in broker.recent(flow_run_id):
        if seen.id == event_id:
            return seen.occurred
    try:
        wanted = UUID(event_id)
    except ValueError:
        return None
    page = await client.read_events(filter=_history_filter(flow_run_id, None, wanted), limit=1)
    return page.events[0].occurred if page.events else None


async def _catch_up(
    client: PrefectClient, broker: EventBroker, flow_run_id: str, since: datetime | None
) -> tuple[list[RunEvent], State | None]:
    """A run's history since a time, then its current state (read after, so never older)."""
    history = await read_history(client, broker, flow_run_id, since)
    run = await client.read_flow_run(UUID(flow_run_id))
    return history, run.state


async def follow_run(
    client: PrefectClient,
    broker: EventBroker,
    flow_run_id: str,
    last_event_id: str | None = None,
    *,
    recheck_s: float = RECHECK_S,
    grace_s: float = FINAL_GRACE_S,
) -> AsyncIterator[RunEvent | Overflow]:
    """A run's events after `last_event_id` (all without it), then live ones, until final.

    Every stream ends with the run's final state, even when `last_event_id` is that state,
    so a client that stops on it never reconnects in a loop.
    """
    sent: set[str] = set()
    with broker.subscribe(flow_run_id) as live:
        # Subscribed first, history second: an event is in one or the other, or both.
        floor = None
        if last_event_id:
            floor = await _occurred_of(client, broker, flow_run_id, last_event_id)
        pending, state = await _catch_up(client, broker, flow_run_id, floor)
        if floor is not None and last_event_id is not None:
            ids = [event.id for event in pending]
            if last_event_id in ids:
                sent.update(ids[: ids.index(last_event_id) + 1])
        newest = floor
        while True:
            for event in sorted(pending, key=lambda e: e.occurred):
                if event.final:
                    yield event
                    return
                if event.id in sent or (floor is not None and event.occurred < floor):
                    continue
                sent.add(event.id)
                newest = event.occurred if newest is None else max(newest, event.occurred)
                yield event
            if state is not None and state.type.value in FINAL_STATES:
                yield state_event(state)
                return
            state = None
            arrived = await live.wait(recheck_s)
            if live.overflowed:
                yield Overflow()
                return
            if not arrived or live.take_resync():
                start = newest - _REREAD_MARGIN if newest is not None else None
                if start is not None and floor is not None:
                    start = max(start, floor)
                try:
                    pending, state = await _catch_up(client, broker, flow_run_id, start)
                except httpx.HTTPError as exc:
                    # Prefect is unreachable for now: keep the live feed, re-read later.
                    logger.warning("re-reading flow run %s failed: %s", flow_run_id, exc)
                    pending = []
                continue
            pending = live.take()
            if any(event.final for event in pending):
                await asyncio.sleep(grace_s)
                pending += live.take() + broker.recent(flow_run_id)
