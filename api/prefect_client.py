"""Settings of the API's Prefect client: a busy limits write retries soon."""

from __future__ import annotations

import random
from typing import Any, Final

import httpx
from fastapi import status

# Two concurrent writes to Prefect's SQLite database can answer 503 at once, and Prefect's
# client then waits 2, 4, 8, 16 and 32 s before its retries. The `prefect` limits backend's
# writes are tiny and frequent, so they retry after tens of milliseconds. Other writes keep
# Prefect's backoff: measured with 100 uploads at once (benchmarks/api.py), retrying flow-run
# creation after milliseconds too turned 39 of them into 503s instead of slow 202s.
_LIMITS_PATH: Final = "/v2/concurrency_limits/"


async def _retry_busy_soon(response: httpx.Response) -> None:
    """Gives a busy answer to a limits write a Retry-After of tens of milliseconds."""
    if (
        response.status_code == status.HTTP_503_SERVICE_UNAVAILABLE
        and _LIMITS_PATH in response.request.url.path
        and "Retry-After" not in response.headers
        and response.headers.get("Prefect-Maintenance") != "true"
    ):
        response.headers["Retry-After"] = f"{random.uniform(0.02, 0.2):.3f}"


def prefect_httpx_settings() -> dict[str, Any]:
    """httpx settings of the API's Prefect client (see the module docstring)."""
    return {"event_hooks": {"response": [_retry_busy_soon]}}
