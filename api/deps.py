"""Dependencies the routes declare through Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prefect.client.orchestration import PrefectClient

from api.auth import authenticate
from api.limits import Limiter, Reservation
from api.prefect_tasks import IDEMPOTENCY_KEY_PATTERN, find_any_task
from core.settings import Settings, get_settings


def _prefect(request: Request) -> PrefectClient:
    client: PrefectClient = request.app.state.prefect
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]


_bearer = HTTPBearer(
    auto_error=False, description="A user's token, or the service token with X-User-Id."
)


def _authenticated_user(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_user_id: Annotated[
        str | None,
        Header(description="User the chat backend acts for (with the service token)."),
    ] = None,
) -> str:
    token = credentials.credentials if credentials is not None else None
    return authenticate(token, x_user_id, settings)


PrefectDep = Annotated[PrefectClient, Depends(_prefect)]


def _limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[Limiter, Depends(_limiter)]


async def _current_user(
    user: Annotated[str, Depends(_authenticated_user)], limiter: LimiterDep, settings: SettingsDep
) -> str:
    await limiter.check_rate(user, settings)
    return user


# Every authenticated request counts against the caller's rate limit (429 past it).
CurrentUser = Annotated[str, Depends(_current_user)]


class _Replay:
    """The slot of a request that repeats an existing task: it starts nothing."""

    def bind(self, task_id: str) -> None:
        """Nothing to record: the task is already counted."""


async def _task_slot(
    user: CurrentUser,
    client: PrefectDep,
    limiter: LimiterDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Repeating a key (1-128 letters, digits or _.:-) returns the task "
            "the first request started instead of starting another.",
        ),
    ] = None,
) -> AsyncIterator[Reservation]:
    if idempotency_key is not None and await find_any_task(client, user=user, key=idempotency_key):
        # A repeat is answered with the task it names, even when the user is at the cap.
        yield _Replay()
        return
    async with limiter.task_slot(user, settings) as reservation:
        yield reservation


# Routes that start a task declare it: 429 at max_tasks_in_flight, before the body is read,
# and pass it to start_task so the slot is tied to the run. Its exit runs when the route
# returns, so a slot left unbound (no run was created) is given back.
TaskSlot = Annotated[Reservation, Depends(_task_slot, scope="function")]
