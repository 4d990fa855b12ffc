"""Tasks started from reserved runs: claimed locally, pushed to Prefect, read before and after."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prefect import get_client
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.settings import PREFECT_API_URL, temporary_settings

from api.claims import ClaimStore
from api.deps import Slot, current_settings
from api.prefect_tasks import deployment_id_of, find_task, list_tasks, start_task
from api.reservoir import Reservoir, push_claim
from core.settings import Settings, get_settings
from deployments.names import AUDIT, INGEST, RESEARCH, RESERVED_STATE, RESERVED_TAG
from tests.api.conftest import ALICE, BOB, SERVICE_TOKEN
from tests.api.test_events import collect, upload
from tests.docgen import make_pdf
from tests.processes import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

RESERVED = "3"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
QUESTION = "How are backups rotated?"


@pytest.fixture(scope="module")
def api_home(api_home: Path) -> Iterator[Path]:
    """The shared API home, with a reservoir of a few runs per deployment."""
    os.environ["OCTAVIUS_RESERVED_RUNS"] = RESERVED
    get_settings.cache_clear()
    yield api_home
    os.environ["OCTAVIUS_RESERVED_RUNS"] = "0"
    get_settings.cache_clear()


def _as(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SERVICE_TOKEN}", "X-User-Id": user}


def _fresh_user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _reserved(home: Path, deployment: str) -> set[str]:
    """Run ids the claims table holds as reserved for the deployment."""
    with contextlib.closing(sqlite3.connect(home / "claims.sqlite3")) as db:
        rows = db.execute("SELECT run_id FROM reserved WHERE deployment = ?", (deployment,))
        return {run_id for (run_id,) in rows}


def _unpushed(home: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(home / "claims.sqlite3")) as db:
        rows = db.execute("SELECT run_id FROM claims WHERE pushed IS NULL")
        return {run_id for (run_id,) in rows}


async def _until(condition: Callable[[], Any], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.2)


async def _wait_final(http: httpx.AsyncClient, task_id: str, user: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while True:
        response = await http.get(f"/api/tasks/{task_id}", headers=_as(user))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["state"] in FINAL:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.5)


async def _runs_of(prefect: PrefectClient, user: str) -> dict[str, Any]:
    runs = await prefect.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"user:{user}"]))
    )
    return {str(run.id): run for run in runs}


@contextlib.asynccontextmanager
async def _api(prefect_url: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh app with its lifespan running, its Prefect client at `prefect_url` if given."""
    from api.main import create_app

    app = create_app()
    settings = {PREFECT_API_URL: prefect_url} if prefect_url else {}
    with temporary_settings(settings):
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http
    finally:
        await lifespan.__aexit__(None, None, None)


class _Gate:
    """A TCP forwarder to Prefect's server that can be closed (nothing listens) and reopened."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{parts.path}"
        self._server: asyncio.Server | None = None

    async def open(self) -> None:
        self._server = await asyncio.start_server(
            self._forward, "127.0.0.1", self.port, reuse_address=True
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_reservoir_upload_answers_from_a_reserved_run_that_completes(
    client: httpx.AsyncClient, api_home: Path
) -> None:
    await _until(lambda: len(_reserved(api_home, INGEST)) >= int(RESERVED), "ingest reserved")
    reserved = _reserved(api_home, INGEST)
    prefect: PrefectClient = client.app.state.prefect  # type: ignore[attr-defined]
    user = _fresh_user("reservoir")
    response = await client.post(
        "/api/documents/upload",
        files=[("files", ("notes.md", b"# Backups\n\nBackups rotate weekly.\n", "text/markdown"))],
        headers=_as(user),
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert task_id in reserved  # answered from the reservoir, not created on the request path
    listed = await client.get("/api/tasks", headers=_as(user))
    assert [item["task_id"] for item in listed.json()["items"]] == [task_id]

    final = await _wait_final(client, task_id, user)
    assert final["state"] == "COMPLETED", final
    assert final["kind"] == "ingest"
    run = (await _runs_of(prefect, user))[task_id]
    assert {"kind:ingest", f"user:{user}"} <= set(run.tags)
    assert RESERVED_TAG not in run.tags
    assert run.parameters["tenant"] == user
    assert list(run.parameters["names"].values()) == ["notes.md"]
    # The served deployment polls every second: the runs nobody claimed were never started.
    for run_id in reserved - {task_id}:
        other = await prefect.read_flow_run(uuid.UUID(run_id))
        assert other.state is not None and other.state.name == RESERVED_STATE, other.state
        assert other.run_count == 0


async def test_reservoir_claims_made_while_prefect_is_down_are_pushed_once_it_is_back(
    api_home: Path,
) -> None:
    async with _api():  # an API with Prefect up fills the reservoir, then stops
        await _until(
            lambda: len(_reserved(api_home, RESEARCH)) >= int(RESERVED), "research reserved"
        )
    reserved = _reserved(api_home, RESEARCH)
    gate = _Gate(str(PREFECT_API_URL.value()))
    user, key = _fresh_user("offline"), "ask-once"
    body = {"query": QUESTION, "depth": 1}
    async with _api(gate.url) as http:  # Prefect unreachable: nothing listens at the gate
        first = await http.post(
            "/api/research", json=body, headers=_as(user) | {"Idempotency-Key": key}
        )
        assert first.status_code == 202, first.text
        kept = first.json()["task_id"]
        again = await http.post(
            "/api/research", json=body, headers=_as(user) | {"Idempotency-Key": key}
        )
        assert again.status_code == 202, again.text
        assert again.json()["task_id"] == kept  # found in the claims table, not in Prefect
        dropped = (await http.post("/api/research", json=body, headers=_as(user))).json()["task_id"]
        assert {kept, dropped} <= reserved

        status = (await http.get(f"/api/tasks/{kept}", headers=_as(user))).json()
        assert (status["state"], status["kind"]) == ("SCHEDULED", "research")
        cancelled = await http.delete(f"/api/tasks/{dropped}", headers=_as(user))
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["state"] == "CANCELLED"
        assert (await http.delete(f"/api/tasks/{dropped}", headers=_as(user))).status_code == 409
        retried = await http.post(f"/api/tasks/{kept}/retry", headers=_as(user))
        assert retried.status_code == 409, retried.text
        # The listing needs Prefect: read it through a live client and this machine's claims.
        async with get_client() as live:
            page = await list_tasks(live, http.app.state.claims, user)  # type: ignore[attr-defined]
        assert [(item.task_id, item.state) for item in page.items] == [
            (dropped, "CANCELLED"),  # reserved later, so listed first
            (kept, "SCHEDULED"),
        ]
        for method, path in (
            ("GET", f"/api/tasks/{kept}"),
            ("GET", f"/api/tasks/{kept}/events"),
            ("DELETE", f"/api/tasks/{kept}"),
            ("POST", f"/api/tasks/{kept}/retry"),
        ):
            theirs = await http.request(method, path, headers=BOB)
            assert theirs.status_code == 404, (method, path, theirs.text)
        await asyncio.sleep(2)
        assert {kept, dropped} <= _unpushed(api_home)

        await gate.open()  # Prefect is back: the same process pushes both claims
        try:
            await _until(lambda: not {kept, dropped} & _unpushed(api_home), "claims pushed", 90)
            assert (await _wait_final(http, kept, user))["state"] == "COMPLETED"
            assert (await _wait_final(http, dropped, user))["state"] == "CANCELLED"
            prefect: PrefectClient = http.app.state.prefect  # type: ignore[attr-defined]
            runs = await _runs_of(prefect, user)
            assert set(runs) == {kept, dropped}  # nothing lost, nothing doubled
            listed = (await http.get("/api/tasks", headers=_as(user))).json()["items"]
            assert {(i["task_id"], i["state"]) for i in listed} == {
                (kept, "COMPLETED"),
                (dropped, "CANCELLED"),
            }
            bobs = (await http.get("/api/tasks", headers=BOB)).json()["items"]
            assert not {kept, dropped} & {item["task_id"] for item in bobs}
            assert runs[kept].parameters["query"] == QUESTION
            assert runs[dropped].run_count == 0
            # After the push, Prefect alone finds the key (another API process would).
            assert await find_task(prefect, None, user=user, kind="research", key=key) == kept
            repeat = await http.post(
                "/api/research", json=body, headers=_as(user) | {"Idempotency-Key": key}
            )
            assert repeat.json()["task_id"] == kept
            # Pushing again (a retry after a lost answer) changes nothing.
            store: ClaimStore = http.app.state.claims  # type: ignore[attr-defined]
            claim = store.get(kept)
            assert claim is not None
            await push_claim(prefect, store, claim)
            after = await prefect.read_flow_run(uuid.UUID(kept))
            assert after.state is not None and after.state.type.value == "COMPLETED"
        finally:
            await gate.close()


async def test_reservoir_key_of_an_audit_reused_for_an_upload_at_the_cap_is_429(
    client: httpx.AsyncClient, api_home: Path, tmp_path: Path
) -> None:
    await _until(lambda: len(_reserved(api_home, AUDIT)) >= 1, "audit reserved")
    settings = Settings(max_tasks_in_flight=1)
    client.app.dependency_overrides[current_settings] = lambda: settings  # type: ignore[attr-defined]
    user, key = _fresh_user("cap"), "same-key"
    pdf = make_pdf(tmp_path / "informe.pdf", [["# Informe", "Texto del informe."]], title="I")
    audit = await client.post(
        "/api/audits",
        files={"file": ("informe.pdf", pdf.read_bytes(), "application/pdf")},
        headers=_as(user) | {"Idempotency-Key": key},
    )
    try:
        assert audit.status_code == 202, audit.text
        # The key names an audit, not an upload: the upload is a new task and the cap holds.
        upload = await client.post(
            "/api/documents/upload",
            files=[("files", ("a.txt", b"Another kind, same key.", "text/plain"))],
            headers=_as(user) | {"Idempotency-Key": key},
        )
        assert upload.status_code == 429, upload.text
        assert "in flight" in upload.json()["detail"]
        repeat = await client.post(
            "/api/audits",
            files={"file": ("informe.pdf", pdf.read_bytes(), "application/pdf")},
            headers=_as(user) | {"Idempotency-Key": key},
        )
        assert repeat.status_code == 202, repeat.text  # a repeat passes even at the cap
        assert repeat.json()["task_id"] == audit.json()["task_id"]
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
        if audit.status_code == 202:
            await client.delete(f"/api/tasks/{audit.json()['task_id']}", headers=_as(user))


async def test_reservoir_empty_falls_back_to_creating_the_run(
    api_home: Path, tmp_path: Path
) -> None:
    store = ClaimStore(tmp_path / "claims.sqlite3")
    user = _fresh_user("fallback")
    async with get_client() as prefect:
        reservoir = Reservoir(store, prefect, deployment_id_of, [RESEARCH], size=0)
        slot = Slot("u", None, idempotency_key="fallback-key")
        started = await start_task(
            prefect,
            reservoir,
            RESEARCH,
            kind="research",
            user=user,
            parameters={"query": QUESTION, "tenant": user, "language": None, "depth": 1},
            slot=slot,
        )
        assert store.get(started.task_id) is None
        run = await prefect.read_flow_run(uuid.UUID(started.task_id))
        assert run.state is not None and run.state.name != RESERVED_STATE
        assert {"kind:research", f"user:{user}"} <= set(run.tags)
        assert run.idempotency_key == f"{user}/research/fallback-key"
        found = await find_task(prefect, store, user=user, kind="research", key="fallback-key")
        assert found == started.task_id
    store.close()


async def test_reservoir_event_stream_of_a_claimed_run_never_shows_reserved(
    api_home: Path,
) -> None:
    import uvicorn

    from api.main import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(), port=free_port(), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-reservoir", daemon=True)
    thread.start()
    try:
        await _until(lambda: server.started, "uvicorn started")
        url = f"http://127.0.0.1:{server.config.port}"
        async with httpx.AsyncClient(base_url=url, headers=ALICE, timeout=60) as live:
            await _until(lambda: _reserved(api_home, INGEST), "ingest reserved")
            reserved = _reserved(api_home, INGEST)
            task_id = await upload(live)
            assert task_id in reserved
            messages = await collect(live, task_id)  # from the claim on, over real HTTP
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    states = [(m.json()["state"], m.json()["state_name"]) for m in messages if m.event == "state"]
    assert states[-1] == ("COMPLETED", "Completed"), states
    assert "RUNNING" in {state for state, _ in states}
    assert RESERVED_STATE not in {name for _, name in states}
