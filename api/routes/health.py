"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from starlette.concurrency import run_in_threadpool

from api.deps import PrefectDep, SettingsDep
from api.schemas import Health
from core.store import get_store

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(client: PrefectDep, settings: SettingsDep, response: Response) -> Health:
    """Prefect's API and the vector store both answer."""
    checks: dict[str, str] = {}
    try:
        healthy = await client.api_healthcheck()
        checks["prefect"] = "ok" if healthy is None else f"error: {healthy}"
    except Exception as exc:
        checks["prefect"] = f"error: {exc}"
    try:
        await run_in_threadpool(get_store(settings).ping)
        checks["qdrant"] = "ok"
    except Exception as exc:
        checks["qdrant"] = f"error: {exc}"
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="ok" if ready else "unavailable", checks=checks)
