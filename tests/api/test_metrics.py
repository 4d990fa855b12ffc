"""GET /metrics over HTTP: Prometheus text with task and request series."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelled, Completed, Failed, Running
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from api.metrics import DURATION_WINDOW, ApiMetrics, RequestMetricsMiddleware
from deployments.names import INGEST_FLOW

pytestmark = pytest.mark.asyncio(loop_scope="session")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(client: httpx.AsyncClient) -> Samples:
    """Every sample of /metrics, keyed by name and labels."""
    response = await client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _new_task(prefect: PrefectClient, kind: str) -> FlowRun:
    """A task of `kind` on a deployment that no runner serves: it stays scheduled."""
    flow_id = await prefect.create_flow_from_name(INGEST_FLOW)
    deployment_id = await prefect.create_deployment(flow_id=flow_id, name="unserved-metrics")
    user = f"metrics-{uuid.uuid4().hex[:12]}"
    return await prefect.create_flow_run_from_deployment(
        deployment_id, parameters={"paths": []}, tags=[f"kind:{kind}", f"user:{user}"]
    )


async def test_metrics_count_tasks_by_kind_and_state(client: httpx.AsyncClient) -> None:
    # Only this test starts audit and research tasks while it runs, so the deltas are exact.
    prefect: PrefectClient = client.app.state.prefect  # type: ignore[attr-defined]
    before = await _scrape(client)
    waiting = [await _new_task(prefect, "audit") for _ in range(2)]
    done = await _new_task(prefect, "research")
    await prefect.set_flow_run_state(done.id, Running(), force=True)
    await prefect.set_flow_run_state(done.id, Completed(), force=True)
    after = await _scrape(client)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert _value(after, "octavius_prefect_up") == 1.0
    assert delta("octavius_tasks", kind="audit", state="SCHEDULED") == 2
    assert delta("octavius_task_queue_depth", kind="audit") == 2
    assert delta("octavius_tasks", kind="research", state="COMPLETED") == 1
    assert delta("octavius_task_duration_sample_runs", kind="research") == 1
    assert {"0.5", "0.9", "1.0"} <= {
        dict(labels)["quantile"]
        for name, labels in after
        if name == "octavius_task_duration_seconds" and ("kind", "research") in labels
    }
    assert ("octavius_tasks", frozenset({("kind", "ingest"), ("state", "CRASHED")})) in after
    for run in waiting:
        await prefect.set_flow_run_state(run.id, Cancelled(), force=True)


async def test_metrics_label_requests_by_route_template(client: httpx.AsyncClient) -> None:
    ids = [str(uuid.uuid4()) for _ in range(2)]
    for task_id in ids:
        assert (await client.get(f"/api/tasks/{task_id}")).status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404
    samples = await _scrape(client)
    route = "/api/tasks/{task_id}"
    labels = {"method": "GET", "route": route, "status": "404"}
    assert _value(samples, "octavius_api_requests_total", **labels) == 2
    assert _value(samples, "octavius_api_requests_total", **{**labels, "route": "unmatched"}) == 1
    assert (
        _value(samples, "octavius_api_request_duration_seconds_count", method="GET", route=route)
        == 2
    )
    assert not any(task_id in str(key) for key in samples for task_id in ids)


async def test_metrics_need_no_user_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    assert "octavius_tasks" in response.text


async def test_metrics_rates_mean_duration_and_workers(client: httpx.AsyncClient) -> None:
    prefect: PrefectClient = client.app.state.prefect  # type: ignore[attr-defined]
    before = await _scrape(client)
    outcomes = [Completed(), Completed(), Completed(), Failed(message="boom")]
    for state in outcomes:
        run = await _new_task(prefect, "ingest")
        await prefect.set_flow_run_state(run.id, Running(), force=True)
        await prefect.set_flow_run_state(run.id, state, force=True)
    after = await _scrape(client)
    minutes = DURATION_WINDOW.total_seconds() / 60

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    per_minute = "octavius_tasks_finished_per_minute"
    assert delta(per_minute, kind="ingest", state="COMPLETED") == pytest.approx(3 / minutes)
    assert delta(per_minute, kind="ingest", state="FAILED") == pytest.approx(1 / minutes)
    success = _value(after, "octavius_task_success_rate", kind="ingest")
    failure = _value(after, "octavius_task_failure_rate", kind="ingest")
    assert 0 < failure < 1
    assert success + failure == pytest.approx(1.0)
    assert _value(after, "octavius_task_duration_mean_seconds", kind="ingest") >= 0
    assert ("octavius_task_duration_mean_seconds", frozenset({("kind", "ingest")})) in after
    assert ("octavius_active_workers", frozenset()) in after
    assert ("octavius_deployments_ready", frozenset()) in after


async def test_metrics_waiting_counts_requests_until_their_answer_starts() -> None:
    # A bare app under the middleware: one answer held back, one failing, one event stream.
    metrics = ApiMetrics()
    release = asyncio.Event()
    streaming = asyncio.Event()

    async def held(request: Request) -> PlainTextResponse:
        await release.wait()
        return PlainTextResponse("done")

    async def failing(request: Request) -> PlainTextResponse:
        raise RuntimeError("boom")

    async def stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"first\n"
            await streaming.wait()

        return StreamingResponse(body())

    app = Starlette(
        routes=[Route("/held", held), Route("/failing", failing), Route("/stream", stream)],
        middleware=[Middleware(RequestMetricsMiddleware, metrics=metrics)],
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        pending = asyncio.create_task(http.get("/held"))
        await asyncio.sleep(0.05)
        assert metrics.waiting == 1
        release.set()
        assert (await pending).status_code == 200
        assert metrics.waiting == 0
        assert (await http.get("/failing")).status_code == 500
        assert metrics.waiting == 0
    # httpx's ASGI transport hands out a response only once it has ended: the stream is driven
    # over ASGI directly.
    started = asyncio.Event()
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, object]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            started.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/stream",
        "raw_path": b"/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [],
    }
    call = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(started.wait(), 5)
    assert metrics.waiting == 0  # answered: the stream's length is not a wait
    streaming.set()
    await asyncio.wait_for(call, 5)
    assert metrics.waiting == 0
