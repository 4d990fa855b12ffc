"""Retrieval for research: the hybrid search per sub-question, keeping the raw scores.

The fused ranking is the one `core.search.hybrid_search` returns; its reciprocal-rank scores
only order hits, so whether anything relevant was found is judged on the raw cosine and BM25
scores, which this module keeps beside the fused one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from core.models import SearchHit
from core.research_models import Passage, ReportLanguage, SubQuestionHits
from core.search import CANDIDATES_PER_HIT, QueryEmbedder, fuse, fusion_weights, hybrid_search
from core.settings import Settings
from core.sparse import terms
from core.store import VectorStore

#: Thresholds of "something relevant was found", per query language: the question counts as
#: answered when its best cosine similarity, or the share of its search terms that one of its
#: top passages contains, reaches them. Calibrated on benchmarks/research_{en,es}.jsonl and
#: retrieval_{en,es}.jsonl (see README, "Deep research"). The English-only embedding model puts
#: any two Spanish texts fairly close, so Spanish relies on term coverage. Fused (RRF) scores
#: only order hits and say nothing about relevance on their own.
DENSE_THRESHOLD: dict[ReportLanguage, float] = {"en": 0.45, "es": 0.75}
COVERAGE_THRESHOLD: dict[ReportLanguage, float] = {"en": 0.6, "es": 0.4}
#: Passages whose term coverage counts toward a sub-question's.
COVERAGE_DEPTH = 5


def passage_from(hit: SearchHit, score: float) -> Passage:
    """A passage from a search hit, scored with `score`."""
    return Passage(
        chunk_id=hit.point_id,
        doc_id=hit.doc_id,
        chunk_index=hit.chunk_index,
        document=Path(hit.source).name,
        title=hit.title,
        pages=hit.pages,
        heading_path=hit.heading_path,
        language=hit.language,
        text=hit.text,
        score=score,
    )


def fuse_hits(
    dense: Sequence[SearchHit],
    sparse: Sequence[SearchHit],
    weights: tuple[float, float],
    k: int,
) -> list[Passage]:
    """The top `k` by weighted RRF (as hybrid search fuses), each with its raw scores kept."""
    dense_scores = {hit.point_id: hit.score for hit in dense}
    sparse_scores = {hit.point_id: hit.score for hit in sparse}
    return [
        passage_from(hit, hit.score).model_copy(
            update={
                "dense": dense_scores.get(hit.point_id),
                "sparse": sparse_scores.get(hit.point_id),
            }
        )
        for hit in fuse([dense, sparse], weights, k)
    ]


def search_sub_question(
    sub_question: str,
    *,
    tenant: str,
    language: ReportLanguage,
    k: int,
    store: VectorStore,
    embedder: QueryEmbedder,
    settings: Settings,
) -> SubQuestionHits:
    """The tenant's best `k` passages for a sub-question, by the knowledge base's hybrid search."""
    candidates = k * CANDIDATES_PER_HIT
    common = {
        "tenant": tenant,
        "k": candidates,
        "store": store,
        "embedder": embedder,
        "language": language,
        "settings": settings,
    }
    dense = hybrid_search(sub_question, mode="dense", **common)  # type: ignore[arg-type]
    sparse = hybrid_search(sub_question, mode="sparse", **common)  # type: ignore[arg-type]
    passages = fuse_hits(dense, sparse, fusion_weights(language, settings), k)
    return SubQuestionHits(
        sub_question=sub_question,
        passages=passages,
        top_dense=max((hit.score for hit in dense), default=None),
        top_sparse=max((hit.score for hit in sparse), default=None),
        coverage=term_coverage(sub_question, [p.text for p in passages[:COVERAGE_DEPTH]], language),
    )


def term_coverage(query: str, texts: Sequence[str], language: ReportLanguage) -> float:
    """The largest share of the query's distinct search terms that one of the texts holds."""
    wanted = set(terms(query, language))
    if not wanted:
        return 0.0
    return max(
        (len(wanted & set(terms(text, language))) / len(wanted) for text in texts), default=0.0
    )


def is_relevant(hits: SubQuestionHits, language: ReportLanguage) -> bool:
    """Whether a sub-question found something relevant, by the calibrated thresholds."""
    dense = hits.top_dense or 0.0
    return dense >= DENSE_THRESHOLD[language] or hits.coverage >= COVERAGE_THRESHOLD[language]


def found_anything(results: Sequence[SubQuestionHits], language: ReportLanguage) -> bool:
    """Whether the question itself (the first sub-question) found something relevant.

    Only the question is judged: a keyword facet matches loosely by design.
    """
    return bool(results) and is_relevant(results[0], language)


def index_state(store: VectorStore, tenant: str, settings: Settings, model_id: str) -> str:
    """A digest that changes whenever the tenant's indexed documents change (for cache keys)."""
    digest = hashlib.sha256()
    location = settings.qdrant_url or str(settings.store_dir.resolve())
    digest.update(f"{location}\x00{settings.collection}\x00{tenant}\x00{model_id}".encode())
    for doc_id, document in sorted(store.documents(tenant).items()):
        digest.update(f"\x00{doc_id}:{document.version}:{document.mixed_versions}".encode())
    digest.update(f"\x00{store.count(tenant)}".encode())
    return digest.hexdigest()
