"""The chat-completions client against a real loopback server speaking the OpenAI protocol."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.llm import (
    ChatClient,
    ChatMessage,
    LLMError,
    TransientLLMError,
    get_chat_client,
    normalize_base_url,
)
from core.settings import Settings
from tests.openai_server import ChatServer, Reply, chat_server

HELLO = [ChatMessage(role="user", content="hello")]


@pytest.fixture
def server() -> Iterator[ChatServer]:
    """A running loopback chat server."""
    with chat_server() as running:
        yield running


def _client(
    server: ChatServer,
    sleeps: list[float],
    *,
    timeout_s: float = 5.0,
    retries: int = 3,
    backoff_base_s: float = 0.5,
    backoff_max_s: float = 30.0,
) -> ChatClient:
    return ChatClient(
        server.url,
        "test-model",
        "secret-key",
        timeout_s=timeout_s,
        retries=retries,
        backoff_base_s=backoff_base_s,
        backoff_max_s=backoff_max_s,
        sleep=sleeps.append,
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # a bare host gets the OpenAI version segment (Ollama, vLLM)
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434/v1"),
        ("http://127.0.0.1:11434/", "http://127.0.0.1:11434/v1"),
        # a URL with its version is used as given
        ("http://vllm:8000/v1/", "http://vllm:8000/v1"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        # any other path is the provider's own root and is kept
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1"),
    ],
)
def test_normalize_base_url(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["ftp://host/v1", "localhost:11434", ""])
def test_normalize_base_url_rejects_non_http(bad: str) -> None:
    with pytest.raises(LLMError):
        normalize_base_url(bad)


def test_complete_sends_the_openai_request(server: ChatServer) -> None:
    server.script.append(Reply(content="hi there"))
    assert _client(server, []).complete(HELLO, max_tokens=20) == "hi there"
    (request,) = server.chat_requests()
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer secret-key"
    assert request.body["model"] == "test-model"
    assert request.body["messages"] == [{"role": "user", "content": "hello"}]
    assert request.body["max_tokens"] == 20


def test_complete_retries_429_after_retry_after(server: ChatServer) -> None:
    server.script += [Reply(status=429, headers={"Retry-After": "2"}), Reply(content="done")]
    sleeps: list[float] = []
    assert _client(server, sleeps).complete(HELLO) == "done"
    assert len(server.chat_requests()) == 2
    assert sleeps == [2.0]


def test_complete_retries_5xx_with_growing_jittered_backoff(server: ChatServer) -> None:
    server.script += [Reply(status=503), Reply(status=502), Reply(content="back")]
    sleeps: list[float] = []
    client = _client(server, sleeps, backoff_base_s=1.0, backoff_max_s=30.0)
    assert client.complete(HELLO) == "back"
    assert len(sleeps) == 2
    # attempt n waits within the upper half of base * 2^(n-1)
    assert 0.5 <= sleeps[0] <= 1.0
    assert 1.0 <= sleeps[1] <= 2.0


def test_complete_gives_up_after_the_configured_retries(server: ChatServer) -> None:
    server.script += [Reply(status=500)] * 3
    with pytest.raises(TransientLLMError):
        _client(server, [], retries=2).complete(HELLO)
    assert len(server.chat_requests()) == 3


def test_complete_retries_a_timeout(server: ChatServer) -> None:
    server.script += [Reply(content="late", delay_s=1.5), Reply(content="on time")]
    sleeps: list[float] = []
    assert _client(server, sleeps, timeout_s=0.3).complete(HELLO) == "on time"
    assert len(server.chat_requests()) == 2
    assert len(sleeps) == 1


def test_complete_raises_transient_when_every_attempt_times_out(server: ChatServer) -> None:
    server.script += [Reply(content="late", delay_s=1.0)] * 2
    with pytest.raises(TransientLLMError):
        _client(server, [], timeout_s=0.2, retries=1).complete(HELLO)


def test_complete_does_not_retry_a_client_error(server: ChatServer) -> None:
    server.script.append(Reply(status=400))
    with pytest.raises(LLMError, match="400"):
        _client(server, []).complete(HELLO)
    assert len(server.chat_requests()) == 1


def test_complete_leaves_a_long_retry_after_to_the_task(server: ChatServer) -> None:
    server.script.append(Reply(status=429, headers={"Retry-After": "3600"}))
    sleeps: list[float] = []
    with pytest.raises(TransientLLMError):
        _client(server, sleeps).complete(HELLO)
    assert sleeps == []


def test_complete_rejects_a_malformed_response(server: ChatServer) -> None:
    server.script.append(Reply(raw=b'{"choices": []}'))
    with pytest.raises(LLMError, match="malformed"):
        _client(server, []).complete(HELLO)


def test_get_chat_client_follows_settings(server: ChatServer) -> None:
    assert get_chat_client(Settings(llm_base_url=None)) is None
    with pytest.raises(LLMError, match="OCTAVIUS_LLM_MODEL"):
        get_chat_client(Settings(llm_base_url=server.url))
    client = get_chat_client(
        Settings(llm_base_url=server.url + "/v1", llm_model="m", llm_api_key="k")
    )
    assert client is not None
    server.script.append(Reply(content="configured"))
    assert client.complete(HELLO) == "configured"
    assert server.chat_requests()[0].headers["Authorization"] == "Bearer k"
