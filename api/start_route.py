"""Task-starting routes that skip FastAPI's dependency injection: the upload hot path.

FastAPI solves a route's dependency tree on every request, about a third of an upload's time in
the API process, and a burst of uploads queues on that one event loop. A route made here does
the same steps as one declaring a task slot (settings, caller, Idempotency-Key, rate and
earlier task or slot) by plain calls, and documents the same parameters (TASK_START_OPENAPI).
Registered with TaskStartRoute, FastAPI calls it with the request and sends what it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from api.accepted import accepted_response
from api.deps import TASK_START_OPENAPI, Slot, caller_of, hold_slot, idempotency_key_of, settings_of
from api.schemas import TaskKind
from core.settings import Settings

# A route's work once its slot is held: the answer (accepted_response) or an error.
TaskHandler = Callable[[Request, Slot, Settings], Awaitable[Response]]
# An endpoint made by starts_task: the request in, the finished response out.
Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]

# The 422 FastAPI would document for the Idempotency-Key header.
_VALIDATION_ERROR: dict[str, Any] = {
    "description": "Validation Error",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}


def task_start_openapi(extra: dict[str, Any]) -> dict[str, Any]:
    """The route's own OpenAPI additions (its request body) with the task-start parameters."""
    return {**TASK_START_OPENAPI, **extra}


def task_start_responses(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, Any]:
    """The route's own responses with the documented 422 of a bad header."""
    return {**responses, 422: {**_VALIDATION_ERROR, **responses.get(422, {})}}


class TaskStartRoute(APIRoute):
    """A route whose endpoint (made by starts_task) takes the request and returns the finished
    response: FastAPI documents it from the route's declaration as usual, and on a request
    calls it directly instead of solving its (empty) dependencies and validating its answer."""

    def get_route_handler(self) -> Endpoint:
        """The endpoint itself."""
        handler: Endpoint = self.endpoint
        return handler


def starts_task(
    kind: TaskKind,
) -> Callable[[TaskHandler], Endpoint]:
    """Makes `handler` an endpoint taking only the request: it answers the earlier task of a
    repeated Idempotency-Key itself, and calls `handler` with the held slot otherwise."""

    def decorate(handler: TaskHandler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            settings = await settings_of(request)
            user = caller_of(request, settings)
            state = request.app.state
            try:
                key = idempotency_key_of(request)
            except RequestValidationError:
                await state.limiter.check_rate(user, settings)  # counted (429 first), as ever
                raise
            # The caller's rate is taken with the slot: one shared-file transaction, not two.
            async with hold_slot(state, user, kind, settings, key, rate=True) as slot:
                if slot.earlier is not None:
                    return accepted_response(slot.earlier, settings.api_base_url)
                return await handler(request, slot, settings)

        # FastAPI names the operation after the function and describes it with its docstring.
        endpoint.__name__ = endpoint.__qualname__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return decorate
