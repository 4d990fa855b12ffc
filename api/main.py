"""The FastAPI app: the chat backend's door to background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prefect.client.orchestration import get_client

from api.claims import CLAIMS_FILE, ClaimStore
from api.errors import install_error_handlers
from api.events import EventBroker
from api.garbage import collect_between_requests, freeze_heap_after
from api.limits import LIMITS_FILE, make_limiter
from api.metrics import ApiMetrics, instrument
from api.prefect_client import prefect_httpx_settings
from api.prefect_tasks import deployment_id_of
from api.reservoir import Reservoir
from api.routes import audits, documents, events, health, metrics, research, search, tasks
from api.schemas import ErrorDetail
from api.shared_sqlite import checkpoint_forever
from core.embedder import get_embedder
from core.settings import get_settings
from deployments.names import AUDIT, INGEST, RESEARCH

# The deployments the API starts tasks of: each gets a reservoir of runs made ahead of demand.
TASK_DEPLOYMENTS = (INGEST, AUDIT, RESEARCH)
# How often the claims and limits files are checkpointed, beside the requests.
SQLITE_CHECKPOINT_S = 5.0

# Every /api route authenticates its caller and counts against the caller's limits.
USER_ROUTE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing or wrong bearer token"},
    429: {
        "model": ErrorDetail,
        "description": "Over the caller's request rate or tasks in flight",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "schema": {"type": "integer"},
            }
        },
    },
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Opens the Prefect client and event broker for the app's lifetime, warms the embedder."""
    settings = get_settings()
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    configure_access_log(settings.api_access_log)
    prefect = get_client(httpx_settings=prefect_httpx_settings())
    claims = ClaimStore(settings.home / CLAIMS_FILE)
    async with prefect as client, EventBroker() as broker:
        garbage = asyncio.create_task(
            _manage_garbage(asyncio.to_thread(get_embedder, settings), app.state.api_metrics)
        )
        app.state.prefect = client
        app.state.events = broker
        app.state.claims = claims
        app.state.limiter = make_limiter(settings, client, claims.pending_run_ids)
        # The pusher always runs: claims an earlier process made may still wait for Prefect.
        reservoir = Reservoir(
            claims, client, deployment_id_of, TASK_DEPLOYMENTS, settings.reserved_runs
        )
        reservoir.start()
        app.state.reservoir = reservoir if settings.reserved_runs > 0 else None
        # Both shared SQLite files, whichever limits backend is in use (a missing one is skipped).
        sqlite_files = [settings.home / CLAIMS_FILE, settings.home / LIMITS_FILE]
        checkpoints = asyncio.create_task(checkpoint_forever(sqlite_files, SQLITE_CHECKPOINT_S))
        try:
            yield
        finally:
            for background in (checkpoints, garbage):
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            await reservoir.stop()
            await app.state.limiter.aclose()
            claims.close()


def configure_access_log(enabled: bool) -> None:
    """Off, uvicorn's connections opened from now on write no line per request, as with
    `uvicorn --no-access-log`: they check for a handler once, and skip the formatting too.
    On, uvicorn's own logging configuration stands."""
    if not enabled:
        access = logging.getLogger("uvicorn.access")
        access.handlers = []
        access.propagate = False


async def _manage_garbage(warm_up: Awaitable[object], metrics: ApiMetrics) -> None:
    """Freezes the heap once the embedder is warm, then collects between requests."""
    await freeze_heap_after(warm_up)
    await collect_between_requests(lambda: metrics.waiting > 0)


def create_app() -> FastAPI:
    """The application with every router."""
    app = FastAPI(
        title="Octavius Pipelines",
        version="0.1.0",
        description="Start background jobs, follow them, and search the knowledge base.",
        lifespan=lifespan,
    )
    for router in (
        documents.router,
        audits.router,
        research.router,
        tasks.router,
        events.router,
        search.router,
    ):
        app.include_router(router, responses=USER_ROUTE_RESPONSES)
    for router in (health.router, metrics.router):
        app.include_router(router)
    instrument(app)
    install_error_handlers(app)
    return app


app = create_app()
