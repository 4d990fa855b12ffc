"""Settings of the API's Prefect client: a write that meets a busy database retries soon."""

from __future__ import annotations

import random
from typing import Any, Final

import httpx
from fastapi import status

# Prefect's SQLite database answers 503 at once when two transactions race for its write
# lock (a read that turns into a write cannot wait for the lock), and Prefect's client then
# waits 2, 4, 8, 16 and 32 s before its retries: one contended write could hold a request
# for a minute. The lock is held for milliseconds, so retries start after tens of them.
_FIRST_RETRY_S: Final = 0.05
_LAST_RETRY_S: Final = 2.0
_ATTEMPTS: Final = "octavius_busy_attempts"


async def _retry_busy_soon(response: httpx.Response) -> None:
    """Gives a busy answer without Retry-After one that grows from tens of milliseconds."""
    if (
        response.status_code == status.HTTP_503_SERVICE_UNAVAILABLE
        and "Retry-After" not in response.headers
        and response.headers.get("Prefect-Maintenance") != "true"
    ):
        # Prefect's client sends the same request object again, so it carries the count.
        attempt = response.request.extensions.get(_ATTEMPTS, 0)
        response.request.extensions[_ATTEMPTS] = attempt + 1
        delay = min(_LAST_RETRY_S, _FIRST_RETRY_S * 2**attempt) * random.uniform(0.5, 1.5)
        response.headers["Retry-After"] = f"{delay:.3f}"


def prefect_httpx_settings() -> dict[str, Any]:
    """httpx settings of the API's Prefect client (see the module docstring)."""
    return {"event_hooks": {"response": [_retry_busy_soon]}}
