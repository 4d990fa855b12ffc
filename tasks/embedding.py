"""Embed a batch of chunk texts on a Dask worker, with the model loaded once per process."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from typing import Any

from prefect import Task, task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, Field

from core.embedder import TransientEmbeddingError, get_embedder
from core.settings import get_settings


class EmbedBatch(BaseModel):
    """Texts to embed together, with the model they are meant for."""

    model_id: str
    texts: list[str] = Field(min_length=1)


class EmbeddingMismatchError(RuntimeError):
    """The worker's model is not the one the run planned with (mixed configuration)."""


ChunkRange = tuple[int, int, int]  # document index, first chunk, chunk after the last


def plan_batches(sizes: Sequence[int], max_size: int, slots: int) -> list[list[ChunkRange]]:
    """Embedding batches over documents of `sizes` chunks, largest batch first.

    A batch holds whole documents, so each one it completes can be indexed as soon as it
    returns, and a run killed part-way loses only the batches still running: every finished
    one has been written to the store and the re-run skips it. A document over `max_size`
    is cut into even batches of its own, which depend on it alone, so its finished parts
    come back from the cache. Batches aim at the size that makes their number a multiple of
    the worker slots; sent largest first, the small ones even out the end of the run.
    """
    total = sum(sizes)
    if total <= 0:
        return []
    count = math.ceil(math.ceil(total / max_size) / max(1, slots)) * max(1, slots)
    target = math.ceil(total / min(count, total))
    batches: list[list[ChunkRange]] = []
    current: list[ChunkRange] = []
    filled = 0
    for doc_index, size in enumerate(sizes):
        if size <= 0:
            continue
        if size > max_size:
            parts = math.ceil(size / max_size)
            bounds = [size * part // parts for part in range(parts + 1)]
            batches.extend([(doc_index, lo, hi)] for lo, hi in itertools.pairwise(bounds))
            continue
        if current and filled + size > target:
            batches.append(current)
            current, filled = [], 0
        current.append((doc_index, 0, size))
        filled += size
    if current:
        batches.append(current)
    return sorted(batches, key=lambda batch: -sum(hi - lo for _, lo, hi in batch))


def embed_texts(batch: EmbedBatch) -> list[list[float]]:
    """Dense vectors of the batch's texts, in order."""
    embedder = get_embedder(get_settings())
    if embedder.model_id != batch.model_id:
        raise EmbeddingMismatchError(
            f"worker embeds with {embedder.model_id!r}, the run planned {batch.model_id!r}"
        )
    return embedder.embed_documents(batch.texts)


def _batch_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    batch: EmbedBatch = parameters["batch"]
    digest = hashlib.sha256(f"embed|{parameters['tenant']}|{batch.model_id}".encode())
    for text in batch.texts:
        digest.update(b"\x00")
        digest.update(text.encode())
    return digest.hexdigest()


def _is_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    try:
        state.result()
    except TransientEmbeddingError:
        return True
    except Exception:
        return False
    return False


@task(
    name="embed-batch",
    retries=4,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_is_transient,
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_batch_cache_key),
)
def embed_batch_task(batch: EmbedBatch, tenant: str) -> list[list[float]]:
    """Embeds one batch; retried on transient errors, cached on texts, model and tenant."""
    return embed_texts(batch)
