"""A loopback HTTP server speaking OpenAI's chat-completions protocol, for LLM client tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: a status, the assistant's text (200) and headers, after a delay."""

    status: int = 200
    content: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None


@dataclass
class Request:
    """What the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ChatServer:
    """Serves POST {root}/chat/completions: scripted replies first, then `respond(body)`."""

    def __init__(self, respond: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.script: list[Reply] = []
        self.requests: list[Request] = []
        self.respond = respond or (lambda body: Reply(content="ok"))
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(Request(self.path, dict(self.headers), body))
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}}, {})
                    return
                with server._lock:
                    reply = server.script.pop(0) if server.script else None
                if reply is None:
                    reply = server.respond(body)
                time.sleep(reply.delay_s)
                if reply.raw is not None:
                    self._send_bytes(reply.status, reply.raw, reply.headers)
                elif reply.status == 200:
                    self._send(200, _completion(body, reply.content), reply.headers)
                else:
                    error = {"error": {"message": f"status {reply.status}", "type": "test"}}
                    self._send(reply.status, error, reply.headers)

            def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                self._send_bytes(status, json.dumps(payload).encode(), headers)

            def _send_bytes(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (a timeout test); nothing to answer.
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The server's root, without /v1 (clients add it)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def chat_requests(self) -> list[Request]:
        """The chat-completions requests received so far."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> None:
        """Starts serving in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._server.shutdown()
        self._server.server_close()


def _completion(request: dict[str, Any], content: str) -> dict[str, Any]:
    """A chat.completion object with one choice."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@contextmanager
def chat_server(respond: Callable[[dict[str, Any]], Reply] | None = None) -> Iterator[ChatServer]:
    """A running ChatServer for the duration of the block."""
    server = ChatServer(respond)
    server.start()
    try:
        yield server
    finally:
        server.stop()
