"""Failures of Prefect answer 503 with Retry-After, never 500."""

from __future__ import annotations

import httpx
import pytest
from prefect.client.orchestration import PrefectClient

from api.deps import _prefect
from tests.processes import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_unreachable_prefect_is_503_with_retry_after(client: httpx.AsyncClient) -> None:
    dead = PrefectClient(f"http://127.0.0.1:{free_port()}/api")
    client.app.dependency_overrides[_prefect] = lambda: dead  # type: ignore[attr-defined]
    try:
        async with dead:
            response = await client.get("/api/tasks/00000000-0000-0000-0000-000000000000")
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert "retry later" in response.json()["detail"]
