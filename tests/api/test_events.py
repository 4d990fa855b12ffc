"""Task event streams over HTTP: live progress, resume, replay, keep-alive, and the broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from prefect.events import Event

from api.deps import current_settings
from api.events import EventBroker, Overflow, RunEvent, TaskStateChange, follow_run
from api.schemas import TaskProgress
from core.settings import Settings
from deployments.names import INGEST, PROGRESS_EVENT
from tests.api.conftest import ALICE, BOB, wait_final
from tests.processes import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
STAGES = ["planning", "parsing", "embedding", "indexing"]
# A failsafe against hung streams only; no test asserts how long anything took.
STREAM_LIMIT_S = 300


@dataclass
class Sse:
    """One parsed Server-Sent Events block."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


async def sse_messages(response: httpx.Response) -> AsyncIterator[Sse]:
    """The blocks of an event stream, comments included, as they arrive."""
    current, filled = Sse(), False
    async for line in response.aiter_lines():
        if not line:
            if filled:
                yield current
            current, filled = Sse(), False
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        filled = True
        if name == "":
            current.comment = value
        elif name == "data":
            current.data = f"{current.data}\n{value}" if current.data else value
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
    if filled:
        yield current


async def collect(
    http: httpx.AsyncClient, task_id: str, last_event_id: str | None = None
) -> list[Sse]:
    """Every message of a task's stream until the server closes it."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else None
    async with (
        asyncio.timeout(STREAM_LIMIT_S),
        http.stream("GET", f"/api/tasks/{task_id}/events", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [m async for m in sse_messages(response) if m.comment is None]


async def upload(http: httpx.AsyncClient) -> str:
    """Starts the ingestion of one small, unique document; the task id."""
    text = f"# Nota {uuid.uuid4().hex}\n\nEl servidor DNS se configura en /etc/resolv.conf.\n"
    response = await http.post(
        "/api/documents/upload",
        files=[("files", ("nota.md", text.encode(), "text/markdown"))],
    )
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def check_completed_stream(messages: list[Sse]) -> None:
    """A finished ingestion's stream: ordered progress through the stages, COMPLETED last."""
    assert all(m.event in {"progress", "state"} and m.id for m in messages), messages
    assert len({m.id for m in messages}) == len(messages), "an event was sent twice"
    last = messages[-1]
    assert (last.event, last.json()["state"], last.json()["state_name"]) == (
        "state",
        "COMPLETED",
        "Completed",
    )
    states = [m.json()["state"] for m in messages if m.event == "state"]
    assert "RUNNING" in states
    assert not FINAL & set(states[:-1]), states
    progress = [m.json() for m in messages if m.event == "progress"]
    assert set(progress[0]) == {"stage", "done", "total", "percent", "message"}
    percents = [p["percent"] for p in progress]
    assert percents == sorted(percents), percents
    assert percents[-1] == 100.0
    seen = list(dict.fromkeys(p["stage"] for p in progress))
    assert seen[:3] == ["planning", "parsing", "embedding"], seen
    assert seen == [s for s in STAGES if s in seen], seen


@pytest.fixture(scope="module")
def live_api(api_home: Path) -> Iterator[tuple[str, FastAPI]]:
    """The app under a real uvicorn server in a thread (ASGITransport buffers whole bodies)."""
    import uvicorn

    from api.main import create_app

    app = create_app()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@pytest_asyncio.fixture(loop_scope="session")
async def live(live_api: tuple[str, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the uvicorn-served app, as alice."""
    url, _ = live_api
    async with httpx.AsyncClient(base_url=url, headers=ALICE, timeout=60) as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def scheduled_task(api_home: Path) -> AsyncIterator[str]:
    """Alice's task that stays scheduled: a run of the served deployment an hour from now."""
    from prefect import get_client
    from prefect.states import Scheduled

    async with get_client() as prefect:
        deployment = await prefect.read_deployment_by_name(INGEST)
        run = await prefect.create_flow_run_from_deployment(
            deployment.id,
            parameters={"paths": [], "tenant": "alice"},
            state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(hours=1)),
            tags=["kind:ingest", "user:alice"],
        )
        try:
            yield str(run.id)
        finally:
            await prefect.delete_flow_run(run.id)


async def test_events_stream_progress_live_then_close_on_completed(
    live: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    task_id = await upload(live)
    messages: list[Sse] = []
    async with (
        asyncio.timeout(STREAM_LIMIT_S),
        live.stream("GET", f"/api/tasks/{task_id}/events") as response,
    ):
        async for message in sse_messages(response):
            if message.comment is not None:
                continue
            if not messages:
                # The first message arrives while the run is still going: it is a stream.
                status = (await client.get(f"/api/tasks/{task_id}")).json()
                assert status["state"] not in FINAL, status
            messages.append(message)
    check_completed_stream(messages)
    replay = await collect(client, task_id)
    assert [m.id for m in replay] == [m.id for m in messages]


async def test_events_resume_after_last_event_id(
    live: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    task_id = await upload(live)
    async with (
        asyncio.timeout(STREAM_LIMIT_S),
        live.stream("GET", f"/api/tasks/{task_id}/events") as response,
    ):
        first = [m async for m in _until_progress(response)]
    resumed = await collect(live, task_id, last_event_id=first[-1].id)
    full = await collect(client, task_id)
    ids = [m.id for m in full]
    assert first[-1].id in ids
    assert [m.id for m in resumed] == ids[ids.index(first[-1].id) + 1 :]
    assert [m.data for m in resumed] == [m.data for m in full[ids.index(first[-1].id) + 1 :]]
    check_completed_stream(full)


async def _until_progress(response: httpx.Response) -> AsyncIterator[Sse]:
    async for message in sse_messages(response):
        if message.comment is None:
            yield message
            if message.event == "progress":
                return
    raise AssertionError("the stream closed before any progress")


@pytest.mark.parametrize(
    "last_event_id",
    [
        None,  # a fresh connection
        "not-an-event-id",  # garbage: treated as no id
        str(uuid.uuid4()),  # an id that is none of this run's events
    ],
)
async def test_events_of_a_finished_task_replay_history_and_close(
    client: httpx.AsyncClient, last_event_id: str | None
) -> None:
    task_id = await upload(client)
    final = await wait_final(client, f"/api/tasks/{task_id}")
    assert final["state"] == "COMPLETED", final
    messages = await collect(client, task_id, last_event_id=last_event_id)
    check_completed_stream(messages)
    assert messages[0].event == "state"
    assert messages[0].json()["state"] == "SCHEDULED"
    again = await collect(client, task_id, last_event_id=messages[-1].id)
    assert [(m.id, m.data) for m in again] == [(messages[-1].id, messages[-1].data)]


@pytest.mark.parametrize(
    ("task_id", "headers", "status"),
    [
        ("scheduled", BOB, 404),  # another user's task
        ("00000000-0000-0000-0000-000000000000", ALICE, 404),  # unknown id
        ("not-a-uuid", ALICE, 404),  # malformed id
        ("scheduled", None, 401),  # no token
        ("scheduled", {"Authorization": "Bearer wrong"}, 401),  # unknown token
    ],
)
async def test_events_refuses_before_streaming(
    client: httpx.AsyncClient,
    scheduled_task: str,
    task_id: str,
    headers: dict[str, str] | None,
    status: int,
) -> None:
    request = client.build_request(
        "GET", f"/api/tasks/{scheduled_task if task_id == 'scheduled' else task_id}/events"
    )
    del request.headers["Authorization"]
    request.headers.update(headers or {})
    response = await client.send(request)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]


async def test_events_keep_an_idle_stream_alive_with_pings(
    live: httpx.AsyncClient,
    live_api: tuple[str, FastAPI],
    api_home: Path,
    scheduled_task: str,
) -> None:
    _, app = live_api
    settings = Settings(home=api_home, sse_keepalive_s=0.2)
    app.dependency_overrides[current_settings] = lambda: settings
    seen: list[Sse] = []
    try:
        async with (
            asyncio.timeout(STREAM_LIMIT_S),
            live.stream("GET", f"/api/tasks/{scheduled_task}/events") as response,
        ):
            async for message in sse_messages(response):
                seen.append(message)
                if message.comment is not None:
                    break
    finally:
        app.dependency_overrides.clear()
    assert seen[-1].comment == "ping"
    events = [m for m in seen if m.comment is None]
    assert [(m.event, m.json()["state"]) for m in events] == [("state", "SCHEDULED")]


def _event(flow_run_id: str, percent: float) -> Event:
    """A progress event of a flow run, as a flow sends it."""
    return Event(
        event=PROGRESS_EVENT,
        resource={"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"},
        payload={"stage": "parsing", "done": 1, "total": 2, "percent": percent, "message": "m"},
    )


def _percents(events: list[RunEvent]) -> list[float]:
    assert all(isinstance(e.data, TaskProgress) for e in events)
    return [e.data.percent for e in events if isinstance(e.data, TaskProgress)]


async def test_broker_fans_out_by_run_and_drops_a_reader_that_falls_behind() -> None:
    broker = EventBroker(queue_limit=2)
    one, other = str(uuid.uuid4()), str(uuid.uuid4())
    with (
        broker.subscribe(one) as slow,
        broker.subscribe(one) as fast,
        broker.subscribe(other) as elsewhere,
    ):
        for percent in (10.0, 20.0):
            broker.publish(_event(one, percent))
        assert [e.data.percent for e in fast.take()] == [10.0, 20.0]  # type: ignore[union-attr]
        broker.publish(_event(one, 30.0))
        assert (slow.overflowed, fast.overflowed) == (True, False)
        assert slow.take() == []
        assert [e.data.percent for e in fast.take()] == [30.0]  # type: ignore[union-attr]
        assert not await elsewhere.wait(0)
    assert [e.data.percent for e in broker.recent(one)] == [10.0, 20.0, 30.0]  # type: ignore[union-attr]
    broker.publish(_event(one, 40.0))
    assert len(broker.recent(one)) == 4


async def test_broker_keeps_retrying_while_prefect_is_down() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        broker = EventBroker(backoff_s=(0.01, 0.05))
        broker.start()
    try:
        async with asyncio.timeout(STREAM_LIMIT_S):
            while broker.failures < 3:
                await asyncio.sleep(0.05)
        assert not broker.connected
        assert broker._task is not None and not broker._task.done()
    finally:
        await broker.stop()


async def test_follow_run_drops_a_reader_that_falls_behind(scheduled_task: str) -> None:
    from prefect import get_client

    broker = EventBroker(queue_limit=1)
    async with get_client() as prefect:
        stream = follow_run(prefect, broker, scheduled_task)
        first = await anext(stream)
        assert isinstance(first, RunEvent) and first.kind == "state"
        for percent in (10.0, 20.0):
            broker.publish(_event(scheduled_task, percent))
        assert isinstance(await anext(stream), Overflow)
        with pytest.raises(StopAsyncIteration):
            await anext(stream)


async def test_follow_run_reaches_the_final_state_from_history_without_a_live_feed(
    scheduled_task: str,
) -> None:
    from prefect import get_client
    from prefect.states import Cancelled

    broker = EventBroker()  # never started: nothing arrives live
    async with get_client() as prefect, asyncio.timeout(STREAM_LIMIT_S):
        stream = follow_run(prefect, broker, scheduled_task, recheck_s=0.05)
        first = await anext(stream)
        await prefect.set_flow_run_state(uuid.UUID(scheduled_task), Cancelled(), force=True)
        rest = [event async for event in stream]
    events = [e for e in [first, *rest] if isinstance(e, RunEvent)]
    states = [e.data.state for e in events if isinstance(e.data, TaskStateChange)]
    assert states == ["SCHEDULED", "CANCELLED"]


class _Proxy:
    """A loopback TCP proxy whose open connections a test can cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()


async def test_broker_follows_again_after_the_connection_drops(prefect_harness: None) -> None:
    from prefect.events.clients import get_events_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    target = httpx.URL(str(PREFECT_API_URL.value()))
    proxy = _Proxy(target.port or 80)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        broker = EventBroker(backoff_s=(0.05, 0.2))
        broker.start()
    run_id = str(uuid.uuid4())
    try:
        async with asyncio.timeout(STREAM_LIMIT_S), get_events_client() as emitter:
            while not broker.connected:
                await asyncio.sleep(0.05)
            with broker.subscribe(run_id) as live:
                await emitter.emit(_event(run_id, 10.0))
                assert await live.wait(60)
                assert _percents(live.take()) == [10.0]
                live.take_resync()
                proxy.cut()
                while broker.connections < 2:
                    await asyncio.sleep(0.05)
                assert live.take_resync(), "streams were not told to re-read history"
                await emitter.emit(_event(run_id, 20.0))
                got: list[float] = []
                while not got:
                    await live.wait(60)
                    got += _percents(live.take())
                assert got == [20.0]
        assert proxy.accepted >= 2
    finally:
        await broker.stop()
        server.close()
