"""Per-user limits: request rate and tasks in flight, in one API process and across two."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import HTTPException
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.states import Scheduled

from api.deps import current_settings
from api.limits import TASKS_RETRY_AFTER_S
from api.limits_local import LocalLimiter
from api.limits_prefect import count_in_flight, task_slot
from core.settings import Settings
from deployments.names import INGEST
from deployments.stack import wait_healthy
from tests.api.conftest import SERVICE_TOKEN
from tests.processes import free_port, process_group

asyncio_test = pytest.mark.asyncio(loop_scope="session")
ZERO_TASK = f"/api/tasks/{uuid.UUID(int=0)}"


def _new_user(prefix: str) -> str:
    """A user nobody else uses, so limits never leak between tests."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _as(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SERVICE_TOKEN}", "X-User-Id": user}


@pytest.fixture
def configure(client: httpx.AsyncClient) -> Iterator[Callable[..., None]]:
    """Sets the app's settings for one test (the environment's, with the given overrides)."""

    def apply(**values: Any) -> None:
        settings = Settings(**values)
        client.app.dependency_overrides[current_settings] = lambda: settings  # type: ignore[attr-defined]

    yield apply
    client.app.dependency_overrides.clear()  # type: ignore[attr-defined]


def _prefect(client: httpx.AsyncClient) -> PrefectClient:
    prefect: PrefectClient = client.app.state.prefect  # type: ignore[attr-defined]
    return prefect


async def _upload(client: httpx.AsyncClient, user: str) -> httpx.Response:
    return await client.post(
        "/api/documents/upload",
        files=[("files", ("limits.txt", b"Rate limits keep the service fair.", "text/plain"))],
        headers=_as(user),
    )


async def _future_run(prefect: PrefectClient, user: str) -> uuid.UUID:
    """A task of the user that stays SCHEDULED (due tomorrow), as a queued task does."""
    deployment = await prefect.read_deployment_by_name(INGEST)
    run = await prefect.create_flow_run_from_deployment(
        deployment.id,
        parameters={"paths": [], "tenant": user, "names": {}},
        tags=["kind:ingest", f"user:{user}"],
        state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(days=1)),
    )
    return run.id


async def _runs_of(prefect: PrefectClient, user: str) -> list[uuid.UUID]:
    runs = await prefect.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"user:{user}"]))
    )
    return [run.id for run in runs]


async def _wait_final(client: httpx.AsyncClient, url: str, user: str) -> dict[str, Any]:
    for _ in range(240):
        body: dict[str, Any] = (await client.get(url, headers=_as(user))).json()
        if body["state"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return body
        await asyncio.sleep(1)
    raise AssertionError(f"task not final: {body}")


async def _delete_runs(prefect: PrefectClient, user: str) -> None:
    for run_id in await _runs_of(prefect, user):
        await prefect.delete_flow_run(run_id)


@asyncio_test
async def test_limits_rate_counts_every_route_then_429_with_retry_after(
    client: httpx.AsyncClient, configure: Callable[..., None]
) -> None:
    configure(rate_limit_per_minute=1, rate_limit_burst=3)
    user = _new_user("rate")
    answers = [
        await client.get("/api/tasks", headers=_as(user)),
        await client.get("/api/search", params={"q": "limits"}, headers=_as(user)),
        await client.get(ZERO_TASK, headers=_as(user)),
    ]
    assert [r.status_code for r in answers] == [200, 200, 404]
    refused = await _upload(client, user)
    assert refused.status_code == 429, refused.text
    # One request per minute comes back: within a minute of the first request.
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "per minute" in refused.json()["detail"]
    assert await _runs_of(_prefect(client), user) == []  # refused before anything started
    again = await client.get(ZERO_TASK, headers=_as(user))
    assert again.status_code == 429


@asyncio_test
async def test_limits_repeated_or_malformed_idempotency_key_counts_against_the_rate(
    client: httpx.AsyncClient, configure: Callable[..., None]
) -> None:
    configure(rate_limit_per_minute=1, rate_limit_burst=3)
    user = _new_user("rate-key")
    keyed = {**_as(user), "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    files = [("files", ("limits.txt", b"Rate limits keep the service fair.", "text/plain"))]
    first = await client.post("/api/documents/upload", files=files, headers=keyed)
    repeat = await client.post("/api/documents/upload", files=files, headers=keyed)
    assert (first.status_code, repeat.status_code) == (202, 202), repeat.text
    assert repeat.json()["task_id"] == first.json()["task_id"]
    bad = {**keyed, "Idempotency-Key": "no spaces"}  # refused (422), and counted as well
    assert (await client.post("/api/documents/upload", files=files, headers=bad)).status_code == 422
    refused = await client.post("/api/documents/upload", files=files, headers=keyed)
    assert refused.status_code == 429, refused.text
    assert "per minute" in refused.json()["detail"]
    configure(rate_limit_per_minute=6000, rate_limit_burst=100)  # to follow the task
    await asyncio.sleep(0.1)  # a few tokens back at that rate
    final = await _wait_final(client, first.json()["status_url"], user)
    assert final["state"] == "COMPLETED", final


@asyncio_test
async def test_limits_rate_of_one_user_leaves_others_alone(
    client: httpx.AsyncClient, configure: Callable[..., None]
) -> None:
    configure(rate_limit_per_minute=1, rate_limit_burst=2)
    busy, other = _new_user("busy"), _new_user("other")
    codes = [(await client.get(ZERO_TASK, headers=_as(busy))).status_code for _ in range(3)]
    assert codes == [404, 404, 429]
    assert (await client.get(ZERO_TASK, headers=_as(other))).status_code == 404


@asyncio_test
async def test_limits_health_readiness_and_metrics_are_not_limited(
    client: httpx.AsyncClient, configure: Callable[..., None]
) -> None:
    configure(rate_limit_per_minute=1, rate_limit_burst=1)
    user = _new_user("probe")
    assert (await client.get(ZERO_TASK, headers=_as(user))).status_code == 404
    assert (await client.get(ZERO_TASK, headers=_as(user))).status_code == 429
    for path in ("/healthz", "/readyz", "/metrics", "/healthz"):
        assert (await client.get(path, headers=_as(user))).status_code == 200, path


@asyncio_test
async def test_limits_tasks_in_flight_refused_without_creating_a_run(
    client: httpx.AsyncClient, configure: Callable[..., None]
) -> None:
    configure(max_tasks_in_flight=2)
    prefect = _prefect(client)
    user, other = _new_user("flight"), _new_user("other")
    queued = [await _future_run(prefect, user) for _ in range(2)]
    try:
        before = await _runs_of(prefect, user)
        refused = await _upload(client, user)
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == str(TASKS_RETRY_AFTER_S)
        assert "in flight" in refused.json()["detail"]
        assert sorted(await _runs_of(prefect, user)) == sorted(before) == sorted(queued)
        assert not (Path(os.environ["OCTAVIUS_HOME"]) / "uploads" / user).exists()

        elsewhere = await _upload(client, other)  # another user's budget is untouched
        assert elsewhere.status_code == 202, elsewhere.text

        await prefect.delete_flow_run(queued[0])  # one task leaves: room for one more
        accepted = await _upload(client, user)
        assert accepted.status_code == 202, accepted.text
        assert len(await _runs_of(prefect, user)) == 2
        for owner, answer in ((other, elsewhere), (user, accepted)):
            final = await _wait_final(client, answer.json()["status_url"], owner)
            assert final["state"] == "COMPLETED", final
    finally:
        await _delete_runs(prefect, user)
        await _delete_runs(prefect, other)


@asyncio_test
async def test_limits_concurrent_task_requests_never_pass_the_cap(
    client: httpx.AsyncClient,
) -> None:
    prefect = _prefect(client)
    settings = Settings(max_tasks_in_flight=3)
    user = _new_user("race")
    await _future_run(prefect, user)

    async def start() -> bool:
        try:
            async with task_slot(prefect, user, settings):
                await _future_run(prefect, user)
        except HTTPException as exc:
            assert exc.status_code == 429
            return False
        return True

    try:
        started = sum(await asyncio.gather(*(start() for _ in range(6))))
        assert 1 <= started <= 2
        assert await count_in_flight(prefect, user) == 1 + started
    finally:
        await _delete_runs(prefect, user)


@asyncio_test
async def test_limits_local_concurrent_task_requests_never_pass_the_cap(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    prefect = _prefect(client)
    settings = Settings(max_tasks_in_flight=3)
    user = _new_user("race-local")
    await _future_run(prefect, user)  # started elsewhere: counted by reconciliation
    limiters = [LocalLimiter(tmp_path / "limits.sqlite3", prefect) for _ in range(2)]

    async def start(limiter: LocalLimiter) -> bool:
        try:
            async with limiter.task_slot(user, settings) as slot:
                slot.bind(str(await _future_run(prefect, user)))
        except HTTPException as exc:
            assert exc.status_code == 429
            return False
        return True

    try:
        started = sum(await asyncio.gather(*(start(limiters[i % 2]) for i in range(6))))
        assert started == 2
        assert await count_in_flight(prefect, user) == 3
        # A task that ends makes room, once the cap sends the next request to Prefect.
        await prefect.delete_flow_run((await _runs_of(prefect, user))[0])
        assert await start(limiters[0])
        assert not await start(limiters[1])
        assert await count_in_flight(prefect, user) == 3
    finally:
        for limiter in limiters:
            await limiter.aclose()
        await _delete_runs(prefect, user)


@asyncio_test
async def test_limits_local_periodic_reconciliation_runs_beside_the_request(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    prefect = _prefect(client)
    settings = Settings(max_tasks_in_flight=2)
    user = _new_user("periodic")
    limiter = LocalLimiter(tmp_path / "limits.sqlite3", prefect)
    try:
        async with limiter.task_slot(user, settings) as slot:  # first task: reconciled first
            slot.bind(str(await _future_run(prefect, user)))
        elsewhere = await _future_run(prefect, user)  # the CLI starts one: the table misses it
        with limiter._write() as db:  # the last reconciliation is older than _SYNC_EVERY_S
            db.execute("UPDATE synced SET at = 0 WHERE user = ?", (user,))
        # The due reconciliation does not hold this request (the table says 1 of 2) ...
        async with limiter.task_slot(user, settings):  # ends without a task: row released
            assert len(limiter._background) == 1
        # ... and waits while requests for tasks keep coming (as if one just came, for ever) ...
        limiter._last_slot = time.monotonic() + 3600
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in limiter._background)
        limiter._last_slot = 0.0  # ... until they pause
        await asyncio.wait_for(asyncio.gather(*limiter._background), 30)
        # ... and from then on the run started elsewhere counts: 2 of 2, refused.
        with pytest.raises(HTTPException) as refused:
            async with limiter.task_slot(user, settings):
                pass
        assert refused.value.status_code == 429
        await prefect.delete_flow_run(elsewhere)
        async with limiter.task_slot(user, settings) as slot:  # the cap asks Prefect again
            slot.bind(str(await _future_run(prefect, user)))
    finally:
        await limiter.aclose()
        await _delete_runs(prefect, user)


def _rows(path: Path, user: str) -> list[tuple[str | None]]:
    """The user's rows as (run id,), sorted, as another process reads the limits file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows: list[tuple[str | None]] = db.execute(
            "SELECT run_id FROM tasks WHERE user = ?", (user,)
        ).fetchall()
    return sorted(rows, key=str)


@asyncio_test
async def test_limits_local_slot_takes_the_rate_in_its_own_transaction(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    settings = Settings(rate_limit_per_minute=1, rate_limit_burst=2, max_tasks_in_flight=5)
    user = _new_user("rate-slot")
    path = tmp_path / "limits.sqlite3"
    limiter = LocalLimiter(path, _prefect(client))
    try:
        for _ in range(2):
            async with limiter.task_slot(user, settings, rate=True):
                assert _rows(path, user) == [(None,)]  # the slot's pending row
        with pytest.raises(HTTPException) as refused:
            async with limiter.task_slot(user, settings, rate=True):
                pytest.fail("a slot past the rate")
        assert refused.value.status_code == 429
        assert "per minute" in refused.value.detail
        assert 1 <= int((refused.value.headers or {})["Retry-After"]) <= 60
        assert _rows(path, user) == []  # refused before any row
        # Without `rate`, a slot leaves the rate alone (the route took it already).
        async with limiter.task_slot(user, settings):
            assert _rows(path, user) == [(None,)]
        with pytest.raises(HTTPException) as refused:
            await limiter.check_rate(user, settings)
        assert refused.value.status_code == 429
    finally:
        await limiter.aclose()


@asyncio_test
async def test_limits_local_burst_shares_one_transaction_and_still_stops_at_the_cap(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    settings = Settings(rate_limit_per_minute=1, rate_limit_burst=7, max_tasks_in_flight=3)
    user = _new_user("burst")
    path = tmp_path / "limits.sqlite3"
    started: set[str] = set()  # runs of the user that Prefect cannot count yet (claims)
    limiter = LocalLimiter(path, _prefect(client), lambda _: started)
    try:
        async with limiter.task_slot(user, settings, rate=True):  # the user's first: asks Prefect
            pass
        statements: list[str] = []
        limiter._db.set_trace_callback(statements.append)
        held = asyncio.Event()

        async def one(run_id: str) -> int:
            try:
                async with limiter.task_slot(user, settings, rate=True) as slot:
                    started.add(run_id)
                    slot.bind(run_id)
                    await held.wait()  # the slot stays taken while the others ask
                    return 202
            except HTTPException as exc:
                return exc.status_code

        asked = [asyncio.ensure_future(one(f"run-{n}")) for n in range(5)]
        await asyncio.sleep(0.01)
        # Five requests of one turn: one transaction (the refused ones' later reconciliation
        # with Prefect may have opened another since).
        first = statements[statements.index("BEGIN IMMEDIATE") : statements.index("COMMIT")]
        assert first.count("SAVEPOINT work") == 5
        held.set()
        codes = await asyncio.gather(*asked)
        assert sorted(codes) == [202, 202, 202, 429, 429]  # the cap holds inside it
        # Every request took a token, refused ones too: one is left (7 - 1 - 5). Of two more
        # requests in one turn (one transaction), the first takes it and the second gets 429.
        codes = await asyncio.gather(
            *(limiter.check_rate(user, settings) for _ in range(2)), return_exceptions=True
        )
        assert codes[0] is None
        assert isinstance(codes[1], HTTPException) and codes[1].status_code == 429
    finally:
        await limiter.aclose()


@asyncio_test
async def test_limits_local_bindings_ride_on_the_next_transaction_or_follow_soon(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    settings = Settings(max_tasks_in_flight=10)
    user = _new_user("bind")
    path = tmp_path / "limits.sqlite3"
    limiter = LocalLimiter(path, _prefect(client))
    try:
        async with limiter.task_slot(user, settings) as slot:
            slot.bind("run-a")
        assert _rows(path, user) == [(None,)]  # still counted, as pending
        await limiter.check_rate(user, settings)  # the next transaction records it
        assert _rows(path, user) == [("run-a",)]
        async with limiter.task_slot(user, settings) as slot:
            slot.bind("run-b")
        await asyncio.sleep(0.5)  # no other transaction: recorded on its own shortly
        assert _rows(path, user) == [("run-a",), ("run-b",)]
        # A run a reconciliation counted already keeps its one row.
        limiter.reconcile(user, {"run-a", "run-b", "run-c"}, time.time())
        async with limiter.task_slot(user, settings) as slot:
            slot.bind("run-c")
        await limiter.check_rate(user, settings)
        assert _rows(path, user) == [("run-a",), ("run-b",), ("run-c",)]
        async with limiter.task_slot(user, settings) as slot:
            slot.bind("run-d")
    finally:
        await limiter.aclose()  # records what is left
    assert _rows(path, user) == [("run-a",), ("run-b",), ("run-c",), ("run-d",)]


@pytest.mark.parametrize("backend", ["local", "prefect"])
def test_limits_rate_is_shared_by_two_api_processes(tmp_path: Path, backend: str) -> None:
    burst = 4
    prefect_port, api_ports = free_port(), (free_port(), free_port())
    prefect_api = f"http://127.0.0.1:{prefect_port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OCTAVIUS_"))}
    base |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}
    server_env = base | {"PREFECT_HOME": str(tmp_path / "prefect-server")}
    api_env = base | {
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "PREFECT_API_URL": prefect_api,
        "OCTAVIUS_HOME": str(tmp_path / "home"),
        "OCTAVIUS_SERVICE_TOKEN": SERVICE_TOKEN,
        "OCTAVIUS_RATE_LIMIT_PER_MINUTE": "1",
        "OCTAVIUS_RATE_LIMIT_BURST": str(burst),
        "OCTAVIUS_LIMITS_BACKEND": backend,
        # A remote embedder that is never called: the API processes skip loading the model.
        "OCTAVIUS_EMBEDDING_URL": "http://127.0.0.1:9/v1",
    }
    server_args = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            process_group(
                [*server_args, "--port", str(prefect_port)], server_env, tmp_path / "s.log"
            )
        )
        apis = [
            stack.enter_context(
                process_group(
                    [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)],
                    api_env,
                    tmp_path / f"api-{port}.log",
                )
            )
            for port in api_ports
        ]
        wait_healthy(f"{prefect_api}/health", 120, lambda: server.poll() is None)
        for port, api in zip(api_ports, apis, strict=True):
            wait_healthy(
                f"http://127.0.0.1:{port}/healthz", 120, lambda api=api: api.poll() is None
            )

        user = _new_user("shared")
        answers: list[tuple[int, httpx.Response]] = []
        for i in range(3 * burst):
            port = api_ports[i % 2]
            response = httpx.get(
                f"http://127.0.0.1:{port}/api/tasks", headers=_as(user), timeout=30
            )
            answers.append((port, response))
        codes = [r.status_code for _, r in answers]
        # One budget for both processes: the burst, not twice the burst.
        assert codes == [200] * burst + [429] * (2 * burst), codes
        assert {port for port, r in answers if r.status_code == 200} == set(api_ports)
        for _, refused in answers[burst:]:
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert "per minute" in refused.json()["detail"]
        other = httpx.get(
            f"http://127.0.0.1:{api_ports[1]}/api/tasks",
            headers=_as(_new_user("other")),
            timeout=30,
        )
        assert other.status_code == 200
