"""Tests of the local and remote embedders, the remote one against a loopback fake server."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from core.embedder import (
    Embedder,
    EmbeddingError,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    TransientEmbeddingError,
    default_model_path,
    embedder_model_id,
    get_embedder,
    local_model_id,
)
from core.settings import Settings


@pytest.fixture(scope="module")
def local() -> Embedder:
    """The bundled model, loaded once for the module."""
    return get_embedder(Settings())


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two normalized vectors."""
    return float(np.dot(a, b))


def test_default_model_path_has_model() -> None:
    assert (default_model_path() / "model.safetensors").is_file()
    assert (default_model_path() / "tokenizer.json").is_file()


def test_local_embedder_dimension_and_norm(local: Embedder) -> None:
    texts = ["¿Cómo instalo un paquete?", "How do I install a package?", "x" * 5000]
    vectors = local.embed_documents(texts)
    assert local.dim == 384
    assert [len(vector) for vector in vectors] == [384] * 3
    assert all(math.isclose(float(np.linalg.norm(v)), 1.0, abs_tol=1e-5) for v in vectors)


def test_local_embedder_empty_input(local: Embedder) -> None:
    assert local.embed_documents([]) == []


def test_local_embedder_query_matches_document(local: Embedder) -> None:
    text = "Copias de seguridad nocturnas del servidor de correo"
    assert cosine(local.embed_query(text), local.embed_documents([text])[0]) > 0.999


@pytest.mark.parametrize(
    ("text", "similar", "unrelated"),
    [
        # Spanish paraphrase against unrelated Spanish
        (
            "¿Cómo instalo un paquete con apt-get?",
            "Para instalar paquetes use apt-get install seguido del nombre.",
            "Mañana lloverá en Madrid por la tarde.",
        ),
        # Spanish paraphrase with no shared content words
        (
            "El gato duerme en el sofá.",
            "Un gato está dormido sobre el sillón.",
            "Los ingresos trimestrales crecieron un diez por ciento.",
        ),
        # English paraphrase against unrelated English
        (
            "The cat is sleeping on the sofa.",
            "A cat is asleep on the couch.",
            "Quarterly revenue grew by ten percent.",
        ),
        # Spanish query, English translation sharing technical terms
        (
            "Configure el servidor SSH para usar claves públicas.",
            "Configure the SSH server to use public keys.",
            "The train to Seville leaves at eight.",
        ),
        # Spanish query, English translation
        (
            "¿Cómo instalo un paquete con apt-get?",
            "How do I install a package with apt-get?",
            "It will rain in Madrid tomorrow afternoon.",
        ),
    ],
)
def test_local_embedder_similar_closer_than_unrelated(
    local: Embedder, text: str, similar: str, unrelated: str
) -> None:
    query, close, far = local.embed_documents([text, similar, unrelated])
    assert cosine(query, close) > cosine(query, far) + 0.1


def test_local_embedder_model_id(local: Embedder) -> None:
    assert local.model_id.startswith("st:all-MiniLM-L6-v2:")
    assert local.model_id == local_model_id(default_model_path())
    assert local.model_id == embedder_model_id(Settings())


def test_get_embedder_concurrent_calls_load_once() -> None:
    settings = Settings(embedding_model=str(default_model_path()))
    results: list[Embedder] = []
    threads = [
        threading.Thread(target=lambda: results.append(get_embedder(settings))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(embedder) for embedder in results}) == 1


def test_get_embedder_cached(local: Embedder) -> None:
    assert get_embedder(Settings()) is local
    assert get_embedder(Settings(embedding_model=str(default_model_path()))) is not local


def test_local_embedder_missing_model_raises(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="not available offline"):
        SentenceTransformerEmbedder(tmp_path / "missing")


def test_embedder_model_id_without_torch() -> None:
    code = (
        "import sys, core.embedder; "
        "print(core.embedder.embedder_model_id()); "
        "sys.exit('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().startswith("st:all-MiniLM-L6-v2:")


Reply = tuple[int, dict[str, str], Any]


@dataclass
class FakeOpenAI:
    """An OpenAI-compatible /v1/embeddings server on loopback with scripted failures."""

    url: str
    script: list[Reply | float] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def reply(self, body: dict[str, Any]) -> Reply:
        """The next scripted reply, or a success: vectors [len, 1, 2] in reversed order."""
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, float):
                time.sleep(step)
            else:
                return step
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0, 2.0]}
            for i, text in enumerate(body["input"])
        ]
        return 200, {}, {"object": "list", "data": data[::-1], "model": body["model"]}


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running fake server, stopped after the test."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.requests.append(body)
            fake.headers.append(dict(self.headers))
            if self.path != "/v1/embeddings":
                status, headers, payload = 404, {}, {"error": {"message": "not found"}}
            else:
                status, headers, payload = fake.reply(body)
            encoded = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            # The client hung up on a deliberately slow reply.
            pass

    server = Server(("127.0.0.1", 0), Handler)
    fake = FakeOpenAI(url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps() -> list[float]:
    """Delays the remote embedder asked to sleep."""
    return []


def remote(fake: FakeOpenAI, sleeps: list[float], **kwargs: Any) -> OpenAIEmbedder:
    """A remote embedder on the fake server that records its backoff instead of sleeping."""
    return OpenAIEmbedder(
        fake.url, "mini", "secret-key", timeout=2.0, sleep=sleeps.append, **kwargs
    )


def test_openai_embedder_orders_and_normalizes(
    fake_openai: FakeOpenAI, sleeps: list[float]
) -> None:
    vectors = remote(fake_openai, sleeps).embed_documents(["a", "bbb", "cc"])
    expected = [np.array([n, 1.0, 2.0]) / np.linalg.norm([n, 1.0, 2.0]) for n in (1, 3, 2)]
    assert np.allclose(vectors, expected)
    assert fake_openai.requests == [{"model": "mini", "input": ["a", "bbb", "cc"]}]
    assert fake_openai.headers[0]["Authorization"] == "Bearer secret-key"


def test_openai_embedder_batches(fake_openai: FakeOpenAI, sleeps: list[float]) -> None:
    texts = [f"t{'x' * i}" for i in range(5)]
    vectors = remote(fake_openai, sleeps, batch_size=2).embed_documents(texts)
    assert [len(request["input"]) for request in fake_openai.requests] == [2, 2, 1]
    assert [round(v[1] / v[2], 6) for v in vectors] == [0.5] * 5
    assert [round(v[0] / v[1]) for v in vectors] == [1, 2, 3, 4, 5]


def test_openai_embedder_dim_probe(fake_openai: FakeOpenAI, sleeps: list[float]) -> None:
    embedder = remote(fake_openai, sleeps)
    assert embedder.dim == 3
    assert embedder.dim == 3
    assert len(fake_openai.requests) == 1


def test_openai_embedder_retry_after_429(fake_openai: FakeOpenAI, sleeps: list[float]) -> None:
    fake_openai.script = [(429, {"Retry-After": "2"}, {"error": {"message": "slow down"}})]
    vector = remote(fake_openai, sleeps).embed_query("hola")
    assert len(vector) == 3
    assert sleeps == [2.0]
    assert len(fake_openai.requests) == 2


def test_openai_embedder_retry_after_500(fake_openai: FakeOpenAI, sleeps: list[float]) -> None:
    fake_openai.script = [(500, {}, {"error": {"message": "boom"}})]
    remote(fake_openai, sleeps, backoff_base=0.5).embed_query("hola")
    assert len(fake_openai.requests) == 2
    assert len(sleeps) == 1
    assert 0.25 <= sleeps[0] <= 0.5


def test_openai_embedder_backoff_grows(fake_openai: FakeOpenAI, sleeps: list[float]) -> None:
    fake_openai.script = [(503, {}, {}), (502, {}, {}), (504, {}, {})]
    remote(fake_openai, sleeps, backoff_base=1.0).embed_query("hola")
    assert len(sleeps) == 3
    # Equal jitter: each delay lies between half and all of base * 2**attempt.
    assert 0.5 <= sleeps[0] <= 1.0
    assert 1.0 <= sleeps[1] <= 2.0
    assert 2.0 <= sleeps[2] <= 4.0


def test_openai_embedder_400_not_retried(fake_openai: FakeOpenAI, sleeps: list[float]) -> None:
    fake_openai.script = [(400, {}, {"error": {"message": "input too long"}})]
    with pytest.raises(EmbeddingError, match=r"400.*input too long"):
        remote(fake_openai, sleeps).embed_query("hola")
    assert len(fake_openai.requests) == 1
    assert sleeps == []


def test_openai_embedder_gives_up_transient(fake_openai: FakeOpenAI, sleeps: list[float]) -> None:
    fake_openai.script = [(503, {}, {})] * 3
    with pytest.raises(TransientEmbeddingError, match="503"):
        remote(fake_openai, sleeps, max_attempts=3).embed_query("hola")
    assert len(fake_openai.requests) == 3
    assert len(sleeps) == 2


def test_openai_embedder_long_retry_after_left_to_caller(
    fake_openai: FakeOpenAI, sleeps: list[float]
) -> None:
    fake_openai.script = [(429, {"Retry-After": "600"}, {})]
    with pytest.raises(TransientEmbeddingError, match="429"):
        remote(fake_openai, sleeps, backoff_max=30.0).embed_query("hola")
    assert sleeps == []


def test_openai_embedder_timeout_retried(fake_openai: FakeOpenAI, sleeps: list[float]) -> None:
    fake_openai.script = [1.0]
    embedder = OpenAIEmbedder(fake_openai.url, "mini", timeout=0.3, sleep=sleeps.append)
    assert len(embedder.embed_query("hola")) == 3
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"data": [{"index": 0, "embedding": [1.0, 0.0]}]},  # one vector for two inputs
        {"object": "list"},  # no data
        {"data": [{"index": 0, "embedding": "AAAA"}, {"index": 1, "embedding": "AAAA"}]},  # base64
    ],
)
def test_openai_embedder_malformed_response(
    fake_openai: FakeOpenAI, sleeps: list[float], payload: dict[str, Any]
) -> None:
    fake_openai.script = [(200, {}, payload)]
    with pytest.raises(EmbeddingError):
        remote(fake_openai, sleeps).embed_documents(["a", "b"])


def test_openai_embedder_wrong_path_is_permanent(
    fake_openai: FakeOpenAI, sleeps: list[float]
) -> None:
    embedder = OpenAIEmbedder(fake_openai.url.removesuffix("/v1"), "mini", sleep=sleeps.append)
    with pytest.raises(EmbeddingError, match="404"):
        embedder.embed_query("hola")
    assert sleeps == []


def test_openai_embedder_connection_refused_transient(sleeps: list[float]) -> None:
    with pytest.raises(TransientEmbeddingError):
        # Nothing listens on port 9 of loopback: connection refused is transient.
        OpenAIEmbedder("http://127.0.0.1:9/v1", "mini", sleep=sleeps.append).embed_query("x")
    assert len(sleeps) == 4


def test_get_embedder_remote(fake_openai: FakeOpenAI) -> None:
    settings = Settings(
        embedding_url=fake_openai.url + "/",
        embedding_remote_model="mini",
        embedding_api_key=SecretStr("k"),
    )
    embedder = get_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.model_id == f"openai:{fake_openai.url}:mini"
    assert embedder.model_id == embedder_model_id(settings)
    assert get_embedder(settings) is embedder
    assert len(embedder.embed_query("hola")) == 3
    assert fake_openai.headers[0]["Authorization"] == "Bearer k"
