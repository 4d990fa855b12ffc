"""Dependencies the routes declare through Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from prefect.client.orchestration import PrefectClient

from core.settings import Settings, get_settings


def _prefect(request: Request) -> PrefectClient:
    client: PrefectClient = request.app.state.prefect
    return client


def _current_user(settings: Annotated[Settings, Depends(get_settings)]) -> str:
    # Authentication lands with the task API (issue 3); until then every caller is the
    # configured tenant.
    return settings.tenant


SettingsDep = Annotated[Settings, Depends(get_settings)]
PrefectDep = Annotated[PrefectClient, Depends(_prefect)]
CurrentUser = Annotated[str, Depends(_current_user)]
