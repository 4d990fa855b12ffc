"""Per-user limits every API process shares: request rate and tasks in flight.

Two backends keep the shared state. `local` (the default) is a SQLite file under
OCTAVIUS_HOME that every API process on the machine opens: a check costs well under a
millisecond and never touches Prefect's database. `prefect` keeps the state in Prefect's
global concurrency limits, which API processes on several machines share.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol

from fastapi import HTTPException, status
from prefect.client.orchestration import PrefectClient

from core.settings import Settings

# Tasks run for minutes; nothing tells when one ends, so ask for a modest wait.
TASKS_RETRY_AFTER_S: Final = 10
# The `local` backend's file under OCTAVIUS_HOME.
LIMITS_FILE: Final = "limits.sqlite3"


class Reservation(Protocol):
    """A slot held for one new task of a user while the request creates it."""

    def bind(self, task_id: str) -> None:
        """Records the task that now occupies the slot."""


class Limiter(Protocol):
    """Where the per-user limits live."""

    async def check_rate(self, user: str, settings: Settings) -> None:
        """Takes one request from the user's rate; 429 with Retry-After when it is used up."""

    def task_slot(
        self, user: str, settings: Settings, *, rate: bool = False
    ) -> AbstractAsyncContextManager[Reservation]:
        """Holds a slot for one new task of the user; 429 at max_tasks_in_flight. With `rate`,
        first takes one request from the user's rate, as check_rate does (429 past it)."""

    async def aclose(self) -> None:
        """Releases what the limiter holds open."""


def too_many(detail: str, retry_after_s: int) -> HTTPException:
    """A 429 with a Retry-After header in whole seconds (at least 1)."""
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail,
        headers={"Retry-After": str(max(1, retry_after_s))},
    )


def rate_refused(settings: Settings, retry_after_s: int) -> HTTPException:
    """The 429 of a user past their request rate."""
    return too_many(
        f"too many requests: at most {settings.rate_limit_per_minute} per minute, "
        f"{settings.rate_limit_burst} at once",
        retry_after_s,
    )


def tasks_refused(settings: Settings) -> HTTPException:
    """The 429 of a user at their maximum of tasks in flight."""
    return too_many(
        f"too many tasks in flight: at most {settings.max_tasks_in_flight} scheduled or "
        "running at once; retry when one has finished",
        TASKS_RETRY_AFTER_S,
    )


# The runs of a user's tasks that Prefect cannot count yet (claims not pushed).
PendingRuns = Callable[[str], set[str]]


def _none_pending(user: str) -> set[str]:
    return set()


def make_limiter(
    settings: Settings, client: PrefectClient, pending: PendingRuns = _none_pending
) -> Limiter:
    """The limiter the settings choose, using the API's Prefect client where it needs one."""
    if settings.limits_backend == "prefect":
        from api.limits_prefect import PrefectLimiter

        return PrefectLimiter(client, pending)
    from api.limits_local import LocalLimiter

    return LocalLimiter(settings.home / LIMITS_FILE, client, pending)
