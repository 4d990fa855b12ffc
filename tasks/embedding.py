"""Embed a batch of chunk texts on a Dask worker, with the model loaded once per process."""

from __future__ import annotations

import hashlib
import math
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


def batch_sizes(total: int, max_size: int, slots: int) -> list[int]:
    """Sizes of the batches that cover `total` chunks, at most `max_size` each.

    Their number is a multiple of the worker slots and their sizes differ by one at most, so
    every worker gets the same work and none idles while another embeds the last batch.
    """
    if total <= 0:
        return []
    count = math.ceil(math.ceil(total / max_size) / max(1, slots)) * max(1, slots)
    count = min(count, total)
    size, extra = divmod(total, count)
    return [size + 1] * extra + [size] * (count - extra)


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
