"""Dependencies the routes declare through Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prefect.client.orchestration import PrefectClient

from api.auth import authenticate
from core.settings import Settings, get_settings


def _prefect(request: Request) -> PrefectClient:
    client: PrefectClient = request.app.state.prefect
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]


_bearer = HTTPBearer(
    auto_error=False, description="A user's token, or the service token with X-User-Id."
)


def _current_user(
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
CurrentUser = Annotated[str, Depends(_current_user)]
