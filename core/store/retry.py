"""Retries of Qdrant server calls: transient failures only, exponential backoff with jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

logger = logging.getLogger(__name__)

T = TypeVar("T")

BASE_DELAY_S = 0.5
MAX_DELAY_S = 10.0


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed if repeated: timeouts, connection errors, 5xx, 429."""
    if isinstance(exc, ResourceExhaustedResponse):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is not None and (exc.status_code == 429 or exc.status_code >= 500)
    if isinstance(exc, ResponseHandlingException):
        # The client wraps transport failures and unparsable answers alike; only the former pass.
        return isinstance(exc.source, httpx.TransportError)
    return isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError)


def backoff_s(attempt: int, exc: BaseException | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): full jitter, or Retry-After."""
    if isinstance(exc, ResourceExhaustedResponse):
        return float(exc.retry_after_s)
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1)))


def call_with_retry(
    call: Callable[[], T],
    *,
    what: str,
    attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """The result of `call`, retried up to `attempts` times while it fails transiently."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = backoff_s(attempt, exc)
            logger.warning(
                "Qdrant %s failed (%s), retry %d/%d in %.2f s",
                what,
                type(exc).__name__,
                attempt,
                attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")
