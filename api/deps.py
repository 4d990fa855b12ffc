"""Dependencies the routes declare through Annotated aliases."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from prefect.client.orchestration import PrefectClient
from pydantic import StringConstraints, TypeAdapter, ValidationError
from starlette.datastructures import State

from api.auth import authenticate
from api.claims import ClaimStore
from api.limits import Limiter, Reservation
from api.prefect_tasks import IDEMPOTENCY_KEY_PATTERN, find_task
from api.reservoir import Reservoir
from api.schemas import TaskKind
from core.settings import Settings, get_settings

# Every dependency here is async: FastAPI runs a plain `def` dependency in its thread pool, a
# thread hop per dependency per request that cost more than all the work they do.


async def current_settings() -> Settings:
    """The process's settings (tests override this dependency)."""
    return get_settings()


async def _prefect(request: Request) -> PrefectClient:
    client: PrefectClient = request.app.state.prefect
    return client


SettingsDep = Annotated[Settings, Depends(current_settings)]


async def settings_of(request: Request) -> Settings:
    """The settings a route declaring SettingsDep gets, overrides included, without injection."""
    provider = request.app.dependency_overrides.get(current_settings, current_settings)
    settings = provider()
    if inspect.isawaitable(settings):
        settings = await settings
    return settings  # type: ignore[no-any-return]


_bearer = HTTPBearer(
    auto_error=False, description="A user's token, or the service token with X-User-Id."
)


PrefectDep = Annotated[PrefectClient, Depends(_prefect)]


async def _limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[Limiter, Depends(_limiter)]


_USER_ID_DESCRIPTION: Final = "User the chat backend acts for (with the service token)."


async def _current_user(
    settings: SettingsDep,
    limiter: LimiterDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_user_id: Annotated[str | None, Header(description=_USER_ID_DESCRIPTION)] = None,
) -> str:
    token = credentials.credentials if credentials is not None else None
    user = authenticate(token, x_user_id, settings)
    await limiter.check_rate(user, settings)
    return user


def caller_of(request: Request, settings: Settings) -> str:
    """The caller, authenticated as CurrentUser does (401), without injection or the rate."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    bearer = token if scheme.lower() == "bearer" and token else None
    return authenticate(bearer, request.headers.get("x-user-id"), settings)


# Every authenticated request counts against the caller's rate limit (429 past it).
CurrentUser = Annotated[str, Depends(_current_user)]


async def _reservoir(request: Request) -> Reservoir | None:
    reservoir: Reservoir | None = request.app.state.reservoir
    return reservoir


ReservoirDep = Annotated[Reservoir | None, Depends(_reservoir)]


async def _claims(request: Request) -> ClaimStore:
    store: ClaimStore = request.app.state.claims
    return store


ClaimsDep = Annotated[ClaimStore, Depends(_claims)]


@dataclass
class Slot:
    """What a request that starts a task holds: its authenticated user and the user's task
    slot, or the earlier task its idempotency key names (then it starts nothing, even when
    the user is at the cap). Routes take the user from here: FastAPI resolves a dependency's
    whole tree again at each place it is declared, cached or not."""

    user: str
    reservation: Reservation | None
    idempotency_key: str | None = None
    earlier: str | None = None

    def bind(self, task_id: str) -> None:
        """Records the task that now occupies the slot."""
        if self.reservation is not None:
            self.reservation.bind(task_id)


_IDEMPOTENCY_KEY_DESCRIPTION: Final = (
    "Repeating a key (1-128 letters, digits or _.:-) returns the task "
    "the first request of this kind started instead of starting another."
)
_IDEMPOTENCY_KEY = Header(pattern=IDEMPOTENCY_KEY_PATTERN, description=_IDEMPOTENCY_KEY_DESCRIPTION)
_IDEMPOTENCY_KEY_VALUE = TypeAdapter(
    Annotated[str, StringConstraints(pattern=IDEMPOTENCY_KEY_PATTERN)]
)


def idempotency_key_of(request: Request) -> str | None:
    """The request's Idempotency-Key header, validated as the declared header is (422)."""
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    try:
        return _IDEMPOTENCY_KEY_VALUE.validate_python(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**error, "loc": ("header", "idempotency-key")} for error in errors]
        ) from exc


@asynccontextmanager
async def hold_slot(
    state: State,
    user: str,
    kind: TaskKind,
    settings: Settings,
    idempotency_key: str | None,
    *,
    rate: bool = False,
) -> AsyncIterator[Slot]:
    """One idempotency lookup (claims table, then Prefect), then the earlier task or a held
    slot (429 at max_tasks_in_flight), given back on exit unless a task took it.

    With `rate`, the request is also counted against the caller's rate first (429 past it):
    with the slot's own transaction when there is no key to look up.
    """
    limiter: Limiter = state.limiter
    if idempotency_key is not None:
        if rate:  # before the lookup, which may ask Prefect
            await limiter.check_rate(user, settings)
            rate = False
        earlier = await find_task(
            state.prefect, state.claims, user=user, kind=kind, key=idempotency_key
        )
        if earlier is not None:
            yield Slot(user, None, idempotency_key, earlier)
            return
    async with limiter.task_slot(user, settings, rate=rate) as reservation:
        yield Slot(user, reservation, idempotency_key)


def task_slot(kind: TaskKind) -> Callable[..., AsyncIterator[Slot]]:
    """The dependency of a route starting tasks of one kind (see hold_slot)."""

    async def dependency(
        request: Request,
        user: CurrentUser,
        settings: SettingsDep,
        idempotency_key: Annotated[str | None, _IDEMPOTENCY_KEY] = None,
    ) -> AsyncIterator[Slot]:
        async with hold_slot(request.app.state, user, kind, settings, idempotency_key) as slot:
            yield slot

    return dependency


# What the task-starting routes that skip dependency injection (see api.start_route) declare
# in their OpenAPI operation instead: the parameters above, as FastAPI documents them.
TASK_START_OPENAPI: Final[dict[str, Any]] = {
    "security": [{"HTTPBearer": []}],
    "parameters": [
        {
            "name": "idempotency-key",
            "in": "header",
            "required": False,
            "schema": {
                "anyOf": [{"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}, {"type": "null"}],
                "description": _IDEMPOTENCY_KEY_DESCRIPTION,
                "title": "Idempotency-Key",
            },
            "description": _IDEMPOTENCY_KEY_DESCRIPTION,
        },
        {
            "name": "x-user-id",
            "in": "header",
            "required": False,
            "schema": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "description": _USER_ID_DESCRIPTION,
                "title": "X-User-Id",
            },
            "description": _USER_ID_DESCRIPTION,
        },
    ],
}


async def _retry_slot(
    user: CurrentUser, limiter: LimiterDep, settings: SettingsDep
) -> AsyncIterator[Slot]:
    async with limiter.task_slot(user, settings) as reservation:
        yield Slot(user, reservation)


# Routes that start a task declare the slot of their kind (the upload route holds its slot
# through api.start_route instead): the slot is taken before the body is read, passed to
# start_task to tie it to the run, and given back when the route returns without a run.
AuditSlot = Annotated[Slot, Depends(task_slot("audit"), scope="function")]
ResearchSlot = Annotated[Slot, Depends(task_slot("research"), scope="function")]
RetrySlot = Annotated[Slot, Depends(_retry_slot, scope="function")]
