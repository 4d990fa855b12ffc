"""Prometheus scrape endpoint.

It takes no token (Prometheus scrapes it from the private network; keep it off the public
proxy). It exposes counts by kind, state and route only, never a user id or a raw path.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import PrefectDep
from api.metrics import ApiMetrics, render

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(request: Request, client: PrefectDep) -> Response:
    """Tasks by kind and state, queue depth, run times, API request counts and latencies."""
    api: ApiMetrics | None = getattr(request.app.state, "api_metrics", None)
    return Response(await render(client, api), media_type=CONTENT_TYPE_LATEST)
