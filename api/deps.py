"""Dependencies the routes declare through Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prefect.client.orchestration import PrefectClient

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


_bearer = HTTPBearer(
    auto_error=False, description="A user's token, or the service token with X-User-Id."
)


PrefectDep = Annotated[PrefectClient, Depends(_prefect)]


async def _limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[Limiter, Depends(_limiter)]


async def _current_user(
    settings: SettingsDep,
    limiter: LimiterDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_user_id: Annotated[
        str | None,
        Header(description="User the chat backend acts for (with the service token)."),
    ] = None,
) -> str:
    token = credentials.credentials if credentials is not None else None
    user = authenticate(token, x_user_id, settings)
    await limiter.check_rate(user, settings)
    return user


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


_IDEMPOTENCY_KEY = Header(
    pattern=IDEMPOTENCY_KEY_PATTERN,
    description="Repeating a key (1-128 letters, digits or _.:-) returns the task "
    "the first request of this kind started instead of starting another.",
)


def task_slot(kind: TaskKind) -> Callable[..., AsyncIterator[Slot]]:
    """The dependency of a route starting tasks of one kind: one idempotency lookup (claims
    table, then Prefect), then the earlier task or a held slot (429 at max_tasks_in_flight)."""

    async def dependency(
        user: CurrentUser,
        client: PrefectDep,
        store: ClaimsDep,
        limiter: LimiterDep,
        settings: SettingsDep,
        idempotency_key: Annotated[str | None, _IDEMPOTENCY_KEY] = None,
    ) -> AsyncIterator[Slot]:
        if idempotency_key is not None:
            earlier = await find_task(client, store, user=user, kind=kind, key=idempotency_key)
            if earlier is not None:
                yield Slot(user, None, idempotency_key, earlier)
                return
        async with limiter.task_slot(user, settings) as reservation:
            yield Slot(user, reservation, idempotency_key)

    return dependency


async def _retry_slot(
    user: CurrentUser, limiter: LimiterDep, settings: SettingsDep
) -> AsyncIterator[Slot]:
    async with limiter.task_slot(user, settings) as reservation:
        yield Slot(user, reservation)


# Routes that start a task declare the slot of their kind: the slot is taken before the body is
# read, passed to start_task to tie it to the run, and given back when the route returns
# without a run.
IngestSlot = Annotated[Slot, Depends(task_slot("ingest"), scope="function")]
AuditSlot = Annotated[Slot, Depends(task_slot("audit"), scope="function")]
ResearchSlot = Annotated[Slot, Depends(task_slot("research"), scope="function")]
RetrySlot = Annotated[Slot, Depends(_retry_slot, scope="function")]
