"""What the HTTP clients of outside services (embeddings, LLM) retry, and when."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx


def is_transient_status(status_code: int) -> bool:
    """Whether an HTTP status means the same request may succeed later."""
    return status_code in (408, 425, 429) or status_code >= 500


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds the server asked to wait (Retry-After as seconds or HTTP date), if it did."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
