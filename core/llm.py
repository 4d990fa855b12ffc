"""A client of an OpenAI-compatible chat-completions endpoint (vLLM, Ollama, OpenAI, ...).

The base URL is the API root up to and including its version segment, as OpenAI's own clients
take it (`https://api.openai.com/v1`, `http://localhost:11434/v1`, `http://vllm:8000/v1`). A URL
with no path at all (`http://localhost:11434`) gets `/v1` appended; any other path is used as
given. Requests go to `POST {base}/chat/completions`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Literal

import httpx
from pydantic import BaseModel

from core.http_retry import is_transient_status, retry_after_s
from core.settings import Settings, get_settings

logger = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


class LLMError(Exception):
    """A chat-completions failure that repeating the same request will not fix."""


class TransientLLMError(Exception):
    """A chat-completions failure worth retrying later: timeout, connection error, 429 or 5xx."""


class ChatMessage(BaseModel):
    """One message of a chat-completions request."""

    role: Literal["system", "user", "assistant"]
    content: str


def normalize_base_url(base_url: str) -> str:
    """The API root to which `/chat/completions` is appended: `/v1` added to a bare host."""
    url = httpx.URL(base_url.strip())
    if url.scheme not in ("http", "https") or not url.host:
        raise LLMError(f"LLM base URL must be an http(s) URL, got {base_url!r}")
    path = url.path.rstrip("/")
    if not path:
        path = "/v1"
    return str(url.copy_with(path=path, query=None, fragment=None))


def backoff_s(attempt: int, base: float = BACKOFF_BASE_S, ceiling: float = BACKOFF_MAX_S) -> float:
    """Seconds before retry `attempt` (1-based): exponential, with jitter over its upper half."""
    top = min(ceiling, base * 2.0 ** (attempt - 1))
    return top / 2 + random.uniform(0, top / 2)


class ChatClient:
    """Sends chat-completions requests, retrying transient failures with backoff and jitter."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        retries: int = 3,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self._attempts = retries + 1
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            timeout=httpx.Timeout(timeout_s),
            headers=headers,
            transport=transport,
        )

    @property
    def model_id(self) -> str:
        """`<base url>:<model>`, for cache keys: another server or model is another answer."""
        return f"{self.base_url}:{self.model}"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> str:
        """The assistant's reply to the messages (first choice), retried while transient."""
        body: dict[str, object] = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "temperature": temperature,
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._client.post("chat/completions", json=body)
            except httpx.TransportError as exc:
                error = TransientLLMError(f"chat request to {self.model_id} failed: {exc!r}")
                delay = self._backoff(attempt)
            else:
                if not is_transient_status(response.status_code):
                    if response.is_error:
                        raise LLMError(
                            f"chat server {self.model_id} answered {response.status_code}: "
                            f"{response.text[:500]}"
                        )
                    return _reply_text(response, self.model_id)
                error = TransientLLMError(
                    f"chat server {self.model_id} answered {response.status_code}"
                )
                wait = retry_after_s(response)
                if wait is not None and wait > self._backoff_max_s:
                    # Waiting that long in-process would hold a worker; let the task retry later.
                    raise error
                delay = self._backoff(attempt) if wait is None else wait
            if attempt == self._attempts:
                raise error
            logger.warning(
                "%s; retrying in %.2f s (attempt %d of %d)", error, delay, attempt, self._attempts
            )
            self._sleep(delay)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        return backoff_s(attempt, self._backoff_base_s, self._backoff_max_s)


def _reply_text(response: httpx.Response, model_id: str) -> str:
    """The content of the first choice of a chat-completions response."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LLMError(f"malformed chat response from {model_id}: {exc!r}") from exc
    if not isinstance(content, str):
        raise LLMError(f"chat response from {model_id} has no text content")
    return content


def get_chat_client(settings: Settings | None = None) -> ChatClient | None:
    """The configured chat client, or None when no OCTAVIUS_LLM_BASE_URL is set."""
    settings = settings or get_settings()
    if not settings.llm_base_url:
        return None
    if not settings.llm_model:
        raise LLMError("OCTAVIUS_LLM_MODEL must be set together with OCTAVIUS_LLM_BASE_URL")
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return ChatClient(
        settings.llm_base_url,
        settings.llm_model,
        api_key,
        timeout_s=settings.llm_timeout_s,
        retries=settings.llm_retries,
    )


def llm_config_id(settings: Settings | None = None) -> str:
    """What the configured LLM is, for cache keys: "none" without one."""
    settings = settings or get_settings()
    if not settings.llm_base_url:
        return "none"
    base = normalize_base_url(settings.llm_base_url)
    return hashlib.sha256(f"{base}:{settings.llm_model}".encode()).hexdigest()[:16]
