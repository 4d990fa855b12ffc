"""Listing, cancelling and retrying tasks, and idempotent uploads, over HTTP."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from filelock import FileLock
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, State
from prefect.states import Cancelled, Completed, Crashed, Running, Scheduled

from core.settings import get_settings
from core.store.lock import LOCK_FILE
from deployments.names import INGEST_FLOW
from tests.api.conftest import BOB, SERVICE_TOKEN

pytestmark = pytest.mark.asyncio(loop_scope="session")

LOCK_TIMEOUT_ENV = "OCTAVIUS_STORE_LOCK_TIMEOUT_S"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_VOCABULARY = (
    "network interface address route gateway resolver package archive mirror kernel module "
    "backup rotation storage volume quota partition filesystem mount option user group shell "
    "service daemon socket timer journal log level message server client secure key policy"
)


@pytest.fixture(scope="module")
def _short_store_lock() -> Iterator[None]:
    """A one-second store lock wait for this module's served flows, so a held lock fails fast."""
    saved = os.environ.get(LOCK_TIMEOUT_ENV)
    os.environ[LOCK_TIMEOUT_ENV] = "1"
    yield
    if saved is None:
        os.environ.pop(LOCK_TIMEOUT_ENV, None)
    else:
        os.environ[LOCK_TIMEOUT_ENV] = saved


@pytest.fixture(scope="module")
def api_home(_short_store_lock: None, api_home: Path) -> Path:
    """The shared API home, served with this module's short lock wait."""
    return api_home


def _as(user: str) -> dict[str, str]:
    """Headers of the chat backend acting for `user`."""
    return {"Authorization": f"Bearer {SERVICE_TOKEN}", "X-User-Id": user}


def _fresh_user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _prefect(client: httpx.AsyncClient) -> PrefectClient:
    prefect: PrefectClient = client.app.state.prefect  # type: ignore[attr-defined]
    return prefect


async def _unserved_deployment(prefect: PrefectClient) -> uuid.UUID:
    """A deployment of the ingestion flow that no runner serves: its runs stay scheduled."""
    flow_id = await prefect.create_flow_from_name(INGEST_FLOW)
    return await prefect.create_deployment(flow_id=flow_id, name="unserved-test")


NewTask = Callable[..., Awaitable[FlowRun]]


@pytest_asyncio.fixture(loop_scope="session")
async def new_task(client: httpx.AsyncClient) -> AsyncIterator[NewTask]:
    """Makes tasks that wait forever (nobody serves their deployment); cancels leftovers."""
    prefect = _prefect(client)
    deployment_id = await _unserved_deployment(prefect)
    created: list[FlowRun] = []

    async def make(user: str, kind: str = "ingest", state: State | None = None) -> FlowRun:
        run = await prefect.create_flow_run_from_deployment(
            deployment_id,
            parameters={"paths": []},
            tags=[f"kind:{kind}", f"user:{user}"],
            state=state,
        )
        created.append(run)
        return run

    yield make
    for run in created:
        state = (await prefect.read_flow_run(run.id)).state
        if state is not None and not state.is_final():
            await prefect.set_flow_run_state(run.id, Cancelled(), force=True)


def _long_text(words: int, seed: int) -> bytes:
    """Plain prose-like text of about `words` words, different on every call."""
    rng = random.Random(seed)
    vocabulary = _VOCABULARY.split()
    paragraphs = [f"Document {uuid.uuid4()} about system administration."]
    written = 0
    while written < words:
        sentences = [
            " ".join(rng.choice(vocabulary) for _ in range(rng.randint(8, 16))).capitalize() + "."
            for _ in range(rng.randint(3, 6))
        ]
        paragraphs.append(" ".join(sentences))
        written += sum(len(s.split()) for s in sentences)
    return "\n\n".join(paragraphs).encode()


async def _upload(client: httpx.AsyncClient, user: str, files: dict[str, bytes]) -> str:
    response = await client.post(
        "/api/documents/upload",
        files=[("files", (name, body, "text/plain")) for name, body in files.items()],
        headers=_as(user),
    )
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def _wait_for(
    client: httpx.AsyncClient,
    task_id: str,
    user: str,
    done: Callable[[dict], bool] = lambda body: body["state"] in FINAL,
    timeout_s: float = 300,
) -> dict:
    """Polls a task until `done(body)` holds (by default: a final state); fails if it ends first."""
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/api/tasks/{task_id}", headers=_as(user))
        assert response.status_code == 200, response.text
        body = response.json()
        if done(body):
            return body
        assert body["state"] not in FINAL, body
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not reached in {timeout_s} s: {body}")


async def _ids(client: httpx.AsyncClient, user: str, **params: str | list[str]) -> list[str]:
    response = await client.get("/api/tasks", params=params, headers=_as(user))
    assert response.status_code == 200, response.text
    return [item["task_id"] for item in response.json()["items"]]


async def test_list_tasks_newest_first_with_filters(
    client: httpx.AsyncClient, new_task: NewTask
) -> None:
    user = _fresh_user("lister")
    kinds = ["ingest", "audit", "ingest", "research", "ingest"]
    runs = [await new_task(user, kind) for kind in kinds]
    cancelled = str(runs[2].id)
    assert (await client.delete(f"/api/tasks/{cancelled}", headers=_as(user))).status_code == 202
    newest_first = [str(run.id) for run in reversed(runs)]

    listing = await client.get("/api/tasks", headers=_as(user))
    assert listing.status_code == 200
    body = listing.json()
    assert [item["task_id"] for item in body["items"]] == newest_first
    assert body["next_cursor"] is None
    assert all("result" not in item for item in body["items"])
    assert [item["kind"] for item in body["items"]] == list(reversed(kinds))
    assert {item["state"] for item in body["items"]} == {"SCHEDULED", "CANCELLED"}

    ingest = [i for i in newest_first if i in {str(r.id) for r in runs[::2]}]
    assert await _ids(client, user, kind="ingest") == ingest
    assert await _ids(client, user, kind=["audit", "research"]) == [
        str(runs[3].id),
        str(runs[1].id),
    ]
    assert await _ids(client, user, state="CANCELLED") == [cancelled]
    assert await _ids(client, user, state="SCHEDULED", kind="ingest") == [
        str(runs[4].id),
        str(runs[0].id),
    ]
    assert await _ids(client, user, state="COMPLETED") == []


async def test_list_tasks_pages_with_a_cursor(client: httpx.AsyncClient, new_task: NewTask) -> None:
    user = _fresh_user("pager")
    runs = [await new_task(user) for _ in range(5)]
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/tasks", params=params, headers=_as(user))
        assert response.status_code == 200, response.text
        pages.append([item["task_id"] for item in response.json()["items"]])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        # A task created while paging is newer than every page: it never shifts later pages.
        if len(pages) == 1:
            await new_task(user)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [i for page in pages for i in page] == [str(run.id) for run in reversed(runs)]


async def test_list_tasks_pages_through_tasks_that_start_at_the_same_time(
    client: httpx.AsyncClient, new_task: NewTask
) -> None:
    user = _fresh_user("ties")
    same = datetime.now(UTC) - timedelta(minutes=1)
    tied = {str((await new_task(user, state=Scheduled(scheduled_time=same))).id) for _ in range(3)}
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/tasks", params=params, headers=_as(user))
        assert response.status_code == 200, response.text
        seen += [item["task_id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(tied)  # each exactly once, none lost at a page boundary


async def test_list_tasks_of_another_user_is_empty(
    client: httpx.AsyncClient, new_task: NewTask
) -> None:
    owner, other = _fresh_user("owner"), _fresh_user("other")
    await new_task(owner)
    assert len(await _ids(client, owner)) == 1
    assert await _ids(client, other) == []


@pytest.mark.parametrize(
    "params",
    [
        {"state": "DONE"},  # not a Prefect state type
        {"state": "completed"},  # state types are upper case
        {"kind": "mining"},  # not a task kind
        {"limit": 0},  # below the smallest page
        {"limit": 101},  # above the largest page
        {"cursor": "not-a-cursor"},  # not made by the API
    ],
)
async def test_list_tasks_rejects_bad_parameters(client: httpx.AsyncClient, params: dict) -> None:
    response = await client.get("/api/tasks", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


async def test_another_users_task_is_404_on_every_route(
    client: httpx.AsyncClient, new_task: NewTask
) -> None:
    owner = _fresh_user("owner")
    run = await new_task(owner)
    url = f"/api/tasks/{run.id}"
    assert (await client.get(url, headers=BOB)).status_code == 404
    assert (await client.delete(url, headers=BOB)).status_code == 404
    assert (await client.post(f"{url}/retry", headers=BOB)).status_code == 404
    assert (await client.get(url, headers=_as(owner))).json()["state"] == "SCHEDULED"
    assert str(run.id) not in await _ids(client, "bob")


async def test_cancel_scheduled_task_is_cancelled_at_once(
    client: httpx.AsyncClient, new_task: NewTask
) -> None:
    run = await new_task("alice")
    response = await client.delete(f"/api/tasks/{run.id}")
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "CANCELLED"
    assert (await client.get(f"/api/tasks/{run.id}")).json()["state"] == "CANCELLED"
    again = await client.delete(f"/api/tasks/{run.id}")
    assert again.status_code == 409
    assert "CANCELLED" in again.json()["detail"]
    assert (await client.post(f"/api/tasks/{run.id}/retry")).status_code == 409


async def test_retry_of_a_task_that_did_not_fail_is_409(
    client: httpx.AsyncClient, new_task: NewTask
) -> None:
    run = await new_task("alice")
    response = await client.post(f"/api/tasks/{run.id}/retry")
    assert response.status_code == 409
    assert "SCHEDULED" in response.json()["detail"]


async def test_crashed_task_that_recovers_reads_its_current_state(
    client: httpx.AsyncClient, new_task: NewTask
) -> None:
    prefect = _prefect(client)
    run = await new_task("alice")
    url = f"/api/tasks/{run.id}"
    await prefect.set_flow_run_state(run.id, Crashed(message="process vanished"), force=True)
    crashed = (await client.get(url)).json()
    assert (crashed["state"], crashed["error"]) == ("CRASHED", "process vanished")

    await prefect.set_flow_run_state(run.id, Running(), force=True)
    running = (await client.get(url)).json()
    assert (running["state"], running["error"]) == ("RUNNING", None)

    await prefect.set_flow_run_state(run.id, Completed(), force=True)
    completed = await client.get(url)
    assert completed.status_code == 200, completed.text
    body = completed.json()
    assert (body["state"], body["error"], body["result"]) == ("COMPLETED", None, None)
    assert body["progress"]["percent"] == 100.0


async def test_retry_of_a_crashed_task_schedules_the_same_run(
    client: httpx.AsyncClient, new_task: NewTask
) -> None:
    prefect = _prefect(client)
    run = await new_task("alice")
    await prefect.set_flow_run_state(run.id, Crashed(message="node lost"), force=True)
    response = await client.post(f"/api/tasks/{run.id}/retry")
    assert response.status_code == 202, response.text
    assert response.json() == {
        "task_id": str(run.id),
        "status_url": f"/api/tasks/{run.id}",
        "events_url": f"/api/tasks/{run.id}/events",
    }
    assert response.headers["location"] == f"/api/tasks/{run.id}"
    status = (await client.get(f"/api/tasks/{run.id}")).json()
    assert (status["state"], status["state_name"]) == ("SCHEDULED", "AwaitingRetry")
    assert (await client.post(f"/api/tasks/{run.id}/retry")).status_code == 409


async def test_cancel_running_ingestion_ends_cancelled(client: httpx.AsyncClient) -> None:
    user = _fresh_user("canceller")
    files = {f"part{i}.txt": _long_text(12_000, seed=i) for i in range(3)}
    task_id = await _upload(client, user, files)
    await _wait_for(client, task_id, user, lambda body: body["state"] == "RUNNING")

    response = await client.delete(f"/api/tasks/{task_id}", headers=_as(user))
    assert response.status_code == 202, response.text
    assert response.json()["state"] in {"CANCELLING", "CANCELLED"}
    final = await _wait_for(client, task_id, user)
    assert final["state"] == "CANCELLED", final
    assert final["result"] is None
    assert final["progress"]["percent"] < 100.0
    listed = (await client.get("/api/tasks", headers=_as(user))).json()["items"]
    assert [(t["task_id"], t["state"]) for t in listed] == [(task_id, "CANCELLED")]


async def test_retry_failed_ingestion_reuses_parsed_and_embedded_steps(
    client: httpx.AsyncClient, api_home: Path
) -> None:
    user = _fresh_user("retrier")
    task_id = await _upload(client, user, {"manual.txt": _long_text(25_000, seed=7)})
    # Planning reads the store, so the lock is taken only once parsing is over; embedding the
    # document's batches then leaves ample time before its single index write.
    embedding = await _wait_for(
        client,
        task_id,
        user,
        lambda body: (
            body["progress"]["stage"] == "embedding"
            and body["progress"]["done"] < body["progress"]["total"]
        ),
    )
    assert embedding["state"] == "RUNNING"
    lock = FileLock(get_settings().store_dir / LOCK_FILE)
    lock.acquire(timeout=30)
    try:
        failed = await _wait_for(client, task_id, user)
    finally:
        lock.release()
    assert failed["state"] == "FAILED", failed
    assert "StoreBusyError" in failed["error"] or "locked" in failed["error"], failed

    response = await client.post(f"/api/tasks/{task_id}/retry", headers=_as(user))
    assert response.status_code == 202, response.text
    assert response.json()["task_id"] == task_id
    final = await _wait_for(client, task_id, user)
    assert final["state"] == "COMPLETED", final
    assert [d["status"] for d in final["result"]["documents"]] == ["indexed"]

    task_runs = await _prefect(client).read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(task_id)]))
    )
    second = [run for run in task_runs if run.flow_run_run_count == 2]
    states: dict[str, set[str | None]] = {}
    for run in second:
        step = run.name.split(" ")[0] if " " in run.name else run.name.rsplit("-", 1)[0]
        states.setdefault(step, set()).add(run.state_name)
    assert states["parse"] == {"Cached"}, states
    assert states["embed-batch"] == {"Cached"}, states
    assert states["index"] == {"Completed"}, states  # the failed step really ran again
    first = [run for run in task_runs if run.flow_run_run_count == 1]
    assert {run.state_name for run in first if run.name.startswith("parse ")} == {"Completed"}


async def test_upload_with_the_same_idempotency_key_returns_the_same_task(
    client: httpx.AsyncClient, api_home: Path
) -> None:
    key = f"upload-{uuid.uuid4()}"
    files = [("files", ("note.txt", b"Idempotent uploads start one task.", "text/plain"))]
    first = await client.post(
        "/api/documents/upload", files=files, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 202, first.text
    folders = set((api_home / "uploads" / "alice").iterdir())
    again = await client.post(
        "/api/documents/upload", files=files, headers={"Idempotency-Key": key}
    )
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.json()["status_url"]
    assert set((api_home / "uploads" / "alice").iterdir()) == folders  # nothing saved twice
    bobs = await client.post(
        "/api/documents/upload", files=files, headers={**BOB, "Idempotency-Key": key}
    )
    assert bobs.status_code == 202, bobs.text
    assert bobs.json()["task_id"] != first.json()["task_id"]
    fresh = await client.post("/api/documents/upload", files=files)
    assert fresh.status_code == 202, fresh.text
    assert fresh.json()["task_id"] != first.json()["task_id"]
    for task_id, user in [
        (first.json()["task_id"], "alice"),
        (bobs.json()["task_id"], "bob"),
        (fresh.json()["task_id"], "alice"),
    ]:
        final = await _wait_for(client, task_id, user)
        assert final["state"] == "COMPLETED", final


@pytest.mark.parametrize(
    "key",
    [
        "",  # empty
        "k" * 129,  # longer than 128 characters
        "has space",  # a character outside letters, digits and _.:-
        "a/b",  # a slash, which scoping uses
        "-leading",  # must start with a letter or digit
    ],
)
async def test_upload_rejects_a_malformed_idempotency_key(
    client: httpx.AsyncClient, key: str
) -> None:
    response = await client.post(
        "/api/documents/upload",
        files=[("files", ("a.txt", b"x", "text/plain"))],
        headers={"Idempotency-Key": key},
    )
    assert response.status_code == 422, response.text
