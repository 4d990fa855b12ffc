"""422 errors in the HTTPValidationError shape that the OpenAPI schema documents."""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prefect.exceptions import PrefectHTTPStatusError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5


def invalid(location: tuple[str, ...], message: str, value: object) -> RequestValidationError:
    """A 422 for one bad input, in the documented HTTPValidationError shape."""
    return RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": value}]
    )


async def prefect_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A 503 with Retry-After when Prefect fails or times out, never a 500."""
    if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code < 500:
        logger.error("Prefect refused a request of %s: %s", request.url.path, exc)
        return JSONResponse({"detail": "the orchestrator refused the request"}, status_code=502)
    logger.warning("Prefect unavailable for %s: %s", request.url.path, exc)
    return JSONResponse(
        {"detail": "the orchestrator is busy or unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Maps failures of Prefect (status errors, timeouts, connection errors) to 502/503."""
    for exc_type in (PrefectHTTPStatusError, httpx.TimeoutException, httpx.TransportError):
        app.add_exception_handler(exc_type, prefect_unavailable)
