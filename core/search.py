"""Hybrid knowledge-base search: dense and BM25 hits fused client-side by weighted RRF.

Fusion runs here rather than in the engine so the embedded store and a Qdrant server rank
identically, and so the dense/sparse weights can depend on the query's language.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, Protocol

from core.models import Language, SearchHit
from core.settings import Settings, get_settings
from core.sparse import encode_query
from core.store import VectorStore, get_store

logger = logging.getLogger(__name__)

SearchMode = Literal["dense", "sparse", "fused"]

#: The usual reciprocal-rank-fusion constant: damps the gap between the first few ranks.
RRF_K = 60
#: Candidates taken from each ranking per hit asked for.
CANDIDATES_PER_HIT = 4


class QueryEmbedder(Protocol):
    """What search needs of an embedder: one query vector."""

    def embed_query(self, text: str) -> list[float]:
        """The dense vector of a search query."""
        ...


def fusion_weights(language: Language, settings: Settings) -> tuple[float, float]:
    """The (dense, sparse) weights for a query language; "other" averages the two."""
    if language == "en":
        return settings.fusion_weights_en
    if language == "es":
        return settings.fusion_weights_es
    en, es = settings.fusion_weights_en, settings.fusion_weights_es
    return ((en[0] + es[0]) / 2, (en[1] + es[1]) / 2)


def fuse(
    rankings: Sequence[Sequence[SearchHit]],
    weights: Sequence[float],
    k: int,
    rrf_k: int = RRF_K,
) -> list[SearchHit]:
    """The top `k` hits by weighted reciprocal rank fusion, each scored with its fused score.

    Hits only a zero-weight ranking found come last, by rank, so a ranking with too few hits
    (a query whose words the corpus lacks) is still filled up to `k`.
    """
    scores: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    hits: dict[str, SearchHit] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[str] = set()
        for hit in ranking:
            if hit.point_id in seen:
                continue
            seen.add(hit.point_id)
            rank = len(seen)
            scores[hit.point_id] = scores.get(hit.point_id, 0.0) + weight / (rrf_k + rank)
            best_rank[hit.point_id] = min(rank, best_rank.get(hit.point_id, rank))
            hits.setdefault(hit.point_id, hit)
    ranked = sorted(scores, key=lambda p: (-scores[p], best_rank[p], p))
    return [hits[pid].model_copy(update={"score": scores[pid]}) for pid in ranked[:k]]


def _detect(query: str) -> Language:
    """The language of a query, by the shared detector (imported on first use)."""
    from core.language import detect_language

    return detect_language(query)


def _default_embedder(settings: Settings) -> QueryEmbedder:
    """The configured embedder (loading it imports torch, so only when needed)."""
    from core.embedder import get_embedder

    return get_embedder(settings)


def hybrid_search(
    query: str,
    *,
    tenant: str,
    k: int,
    mode: SearchMode = "fused",
    store: VectorStore | None = None,
    embedder: QueryEmbedder | None = None,
    language: Language | None = None,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """The tenant's best `k` chunks for a query: dense, BM25, or both fused (the default)."""
    settings = settings or get_settings()
    language = language or _detect(query)
    own_store = store is None
    active = store if store is not None else get_store(settings)
    try:
        if mode == "sparse":
            return active.search_sparse(encode_query(query, language), tenant=tenant, k=k)
        vector = (embedder or _default_embedder(settings)).embed_query(query)
        if mode == "dense":
            return active.search_dense(vector, tenant=tenant, k=k)
        candidates = k * CANDIDATES_PER_HIT
        dense = active.search_dense(vector, tenant=tenant, k=candidates)
        sparse = active.search_sparse(encode_query(query, language), tenant=tenant, k=candidates)
    finally:
        if own_store:
            active.close()
    logger.debug("fusing %d dense and %d sparse candidates", len(dense), len(sparse))
    return fuse([dense, sparse], fusion_weights(language, settings), k)
