"""Dependencies the routes declare through Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prefect.client.orchestration import PrefectClient

from api.auth import authenticate
from api.limits import check_rate, task_slot
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


async def _current_user(
    user: Annotated[str, Depends(_authenticated_user)], client: PrefectDep, settings: SettingsDep
) -> str:
    await check_rate(client, user, settings)
    return user


# Every authenticated request counts against the caller's rate limit (429 past it).
CurrentUser = Annotated[str, Depends(_current_user)]


async def _task_slot(
    user: CurrentUser, client: PrefectDep, settings: SettingsDep
) -> AsyncIterator[None]:
    async with task_slot(client, user, settings):
        yield


# Routes that start a task declare it: 429 at max_tasks_in_flight, before the body is read.
# Its exit runs when the route returns, so the slot is released once the run exists.
TaskSlot = Annotated[None, Depends(_task_slot, scope="function")]
