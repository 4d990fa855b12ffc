"""Prometheus metrics: API requests as they happen, tasks counted from Prefect at scrape time."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar, get_args

import httpx
from fastapi import FastAPI
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterTags,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterNextScheduledStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    WorkerFilter,
    WorkerFilterStatus,
)
from prefect.client.schemas.objects import DeploymentStatus, StateType, WorkerStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.prefect_tasks import KIND_TAG
from api.schemas import TaskKind
from deployments.names import MULTIPROCESS_ENV, WORK_POOL

logger = logging.getLogger(__name__)

T = TypeVar("T")

KINDS: Final = get_args(TaskKind)
DURATION_WINDOW: Final = timedelta(hours=1)
DURATION_SAMPLE: Final = 200
QUANTILES: Final = (0.5, 0.9, 1.0)
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PREFECT_CONCURRENCY: Final = 8
#: Final states whose counts make the per-minute rates.
FINISHED: Final = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED)


class ApiMetrics:
    """Request counts and latencies of one app, in a registry of its own."""

    def __init__(self) -> None:
        """Empty counters in a fresh registry (so several apps in one process never clash)."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "octavius_api_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "octavius_api_request_duration_seconds",
            "Seconds from a request's arrival to the start of its response, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        #: Requests arrived and not yet answered (an event stream counts until its start).
        self.waiting = 0

    def collect(self) -> Iterable[Metric]:
        """This process's request metrics; every worker's when several share the API's port.

        In Prometheus multiprocess mode (MULTIPROCESS_ENV set before the process started)
        each worker writes its counts to files in that folder, and any worker sums them.
        """
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return registry.collect()
        return self.registry.collect()


class RequestMetricsMiddleware:
    """Counts and times every HTTP request, labelled by route template, never the raw path."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        """Wraps `app`, recording into `metrics`."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Passes the request on, watching for the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status_code = 500
        timed = False
        self.metrics.waiting += 1

        def observe() -> None:
            nonlocal timed
            if not timed:
                timed = True
                self.metrics.waiting -= 1
                self.metrics.latency.labels(method, _route(scope)).observe(
                    time.perf_counter() - started
                )

        async def send_and_watch(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                # Time to the response's start: an event stream's length is not latency.
                observe()
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            observe()
            self.metrics.requests.labels(method, _route(scope), str(status_code)).inc()


def _route(scope: Scope) -> str:
    """The matched route's path template ("/api/tasks/{task_id}"), or "unmatched"."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"


def instrument(app: FastAPI) -> None:
    """Adds request metrics to the app; GET /metrics exposes them."""
    app.state.api_metrics = ApiMetrics()
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.api_metrics)


class _Families:
    """A collector of metric families computed beforehand."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        """The families, as given."""
        return self._families


def _kind_filter(kind: str, **fields: object) -> FlowRunFilter:
    return FlowRunFilter(tags=FlowRunFilterTags(all_=[f"{KIND_TAG}{kind}"]), **fields)


def _state(*types: StateType) -> FlowRunFilterState:
    return FlowRunFilterState(type=FlowRunFilterStateType(any_=list(types)))


def _quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted values."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


async def task_families(client: PrefectClient, now: datetime | None = None) -> list[Metric]:
    """Task counts by kind and state, queue depth and recent run times, read from Prefect.

    One count query per kind and state type, one per kind for the queue, one read of at
    most DURATION_SAMPLE runs per kind for run times; no results are read.
    """
    now = now or datetime.now(UTC)
    gate = asyncio.Semaphore(_PREFECT_CONCURRENCY)

    async def bounded(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    states = list(StateType)
    counts = await asyncio.gather(
        *(
            bounded(client.count_flow_runs(flow_run_filter=_kind_filter(kind, state=_state(s))))
            for kind in KINDS
            for s in states
        )
    )
    due = await asyncio.gather(
        *(
            bounded(
                client.count_flow_runs(
                    flow_run_filter=_kind_filter(
                        kind,
                        state=_state(StateType.SCHEDULED),
                        next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=now),
                    )
                )
            )
            for kind in KINDS
        )
    )
    recent = await asyncio.gather(
        *(
            bounded(
                client.read_flow_runs(
                    flow_run_filter=_kind_filter(
                        kind,
                        state=_state(StateType.COMPLETED),
                        end_time=FlowRunFilterEndTime(after_=now - DURATION_WINDOW),
                    ),
                    sort=FlowRunSort.END_TIME_DESC,
                    limit=DURATION_SAMPLE,
                )
            )
            for kind in KINDS
        )
    )

    tasks = GaugeMetricFamily(
        "octavius_tasks", "Tasks by kind and Prefect state type.", labels=["kind", "state"]
    )
    by_kind_state = iter(counts)
    pending: dict[str, int] = {}
    for kind in KINDS:
        for s in states:
            value = next(by_kind_state)
            tasks.add_metric([kind, s.value], value)
            if s == StateType.PENDING:
                pending[kind] = value
    queue = GaugeMetricFamily(
        "octavius_task_queue_depth",
        "Tasks waiting to start: SCHEDULED and due, or PENDING.",
        labels=["kind"],
    )
    for kind, scheduled_due in zip(KINDS, due, strict=True):
        queue.add_metric([kind], scheduled_due + pending[kind])
    durations = GaugeMetricFamily(
        "octavius_task_duration_seconds",
        f"Run time of tasks completed in the last {DURATION_WINDOW.seconds // 60} minutes "
        f"(newest {DURATION_SAMPLE}), by quantile; 1 is the longest.",
        labels=["kind", "quantile"],
    )
    sampled = GaugeMetricFamily(
        "octavius_task_duration_sample_runs",
        "Completed tasks the run-time quantiles were computed from.",
        labels=["kind"],
    )
    for kind, runs in zip(KINDS, recent, strict=True):
        seconds = sorted(run.total_run_time.total_seconds() for run in runs)
        sampled.add_metric([kind], len(seconds))
        if seconds:
            for q in QUANTILES:
                durations.add_metric([kind, str(q)], _quantile(seconds, q))
    return [tasks, queue, durations, sampled]


async def rate_families(client: PrefectClient, now: datetime | None = None) -> list[Metric]:
    """Throughput, success and failure rates and mean run time over the last DURATION_WINDOW,
    and the workers and served deployments Prefect sees alive."""
    now = now or datetime.now(UTC)
    since = now - DURATION_WINDOW
    minutes = DURATION_WINDOW.total_seconds() / 60
    finished = await asyncio.gather(
        *(
            client.count_flow_runs(
                flow_run_filter=_kind_filter(
                    kind, state=_state(s), end_time=FlowRunFilterEndTime(after_=since)
                )
            )
            for kind in KINDS
            for s in FINISHED
        )
    )
    per_minute = GaugeMetricFamily(
        "octavius_tasks_finished_per_minute",
        f"Tasks that reached a final state per minute over the last {minutes:.0f} minutes.",
        labels=["kind", "state"],
    )
    success = GaugeMetricFamily(
        "octavius_task_success_rate",
        "Share of tasks finished in the window that completed (absent when none finished).",
        labels=["kind"],
    )
    failure = GaugeMetricFamily(
        "octavius_task_failure_rate",
        "Share of tasks finished in the window that failed or crashed (absent when none did).",
        labels=["kind"],
    )
    counts = iter(finished)
    for kind in KINDS:
        by_state = {s: next(counts) for s in FINISHED}
        total = sum(by_state.values())
        for s, value in by_state.items():
            per_minute.add_metric([kind, s.value], value / minutes)
        if total:
            success.add_metric([kind], by_state[StateType.COMPLETED] / total)
            failure.add_metric([kind], (total - by_state[StateType.COMPLETED]) / total)
    recent = await asyncio.gather(
        *(
            client.read_flow_runs(
                flow_run_filter=_kind_filter(
                    kind,
                    state=_state(StateType.COMPLETED),
                    end_time=FlowRunFilterEndTime(after_=since),
                ),
                sort=FlowRunSort.END_TIME_DESC,
                limit=DURATION_SAMPLE,
            )
            for kind in KINDS
        )
    )
    mean = GaugeMetricFamily(
        "octavius_task_duration_mean_seconds",
        f"Mean run time of tasks completed in the window (newest {DURATION_SAMPLE}).",
        labels=["kind"],
    )
    for kind, runs in zip(KINDS, recent, strict=True):
        if runs:
            mean.add_metric([kind], sum(r.total_run_time.total_seconds() for r in runs) / len(runs))
    try:
        workers = await client.read_workers_for_work_pool(
            WORK_POOL,
            worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=[WorkerStatus.ONLINE.value])),
        )
    except (ObjectNotFound, httpx.HTTPStatusError) as exc:
        # The embedded stack serves deployments without a work pool.
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code != 404:
            raise
        workers = []
    active = GaugeMetricFamily(
        "octavius_active_workers", f"Prefect workers online in the {WORK_POOL} work pool."
    )
    active.add_metric([], len(workers))
    deployments = await client.read_deployments(
        deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["octavius"]))
    )
    ready = GaugeMetricFamily(
        "octavius_deployments_ready",
        "Deployments whose runner or worker polled Prefect recently (status READY).",
    )
    ready.add_metric([], sum(1 for d in deployments if d.status == DeploymentStatus.READY))
    return [per_minute, success, failure, mean, active, ready]


async def render(client: PrefectClient, api: ApiMetrics | None) -> bytes:
    """Prometheus text: request metrics, task metrics and whether Prefect answered."""
    up = GaugeMetricFamily("octavius_prefect_up", "Whether Prefect answered this scrape.")
    families: list[Metric] = []
    try:
        families = await task_families(client)
        families += await rate_families(client)
        up.add_metric([], 1)
    except Exception:
        logger.exception("reading task metrics from Prefect failed")
        up.add_metric([], 0)
    families.append(up)
    if api is not None:
        families.extend(api.collect())
    return generate_latest(_Families(families))
