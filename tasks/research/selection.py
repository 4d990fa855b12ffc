"""Passages for the report: rankings of all sub-questions fused, de-duplicated, then chosen
for relevance and diversity by maximal marginal relevance (MMR).

MMR compares passages by their BM25 term vectors rather than their dense vectors: the hits
carry no dense vectors, re-embedding them would cost about 70 ms each on CPU, and the default
English-only model makes any two Spanish passages look alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.research_models import Passage, ReportLanguage, SubQuestionHits
from core.search import RRF_K
from core.sparse import encode_document, words

#: Weight of the question's own ranking against a facet's in the fusion.
QUESTION_WEIGHT = 1.0
FACET_WEIGHT = 0.6
#: Relevance against diversity in MMR (1.0: relevance only).
MMR_LAMBDA = 0.7
#: Passages whose word sets overlap this much are one passage told twice.
DUPLICATE_JACCARD = 0.8
#: Relevance kept by a passage in another language than the report's.
OTHER_LANGUAGE_FACTOR = 0.6


def fuse_sub_questions(results: Sequence[SubQuestionHits]) -> list[Passage]:
    """Every distinct passage by weighted RRF over the sub-questions' rankings, best first."""
    fused: dict[str, Passage] = {}
    scores: dict[str, float] = {}
    for index, result in enumerate(results):
        weight = QUESTION_WEIGHT if index == 0 else FACET_WEIGHT
        for rank, passage in enumerate(result.passages, start=1):
            key = passage.chunk_id
            scores[key] = scores.get(key, 0.0) + weight / (RRF_K + rank)
            known = fused.get(key)
            if known is None:
                fused[key] = passage.model_copy(update={"sub_questions": [index]})
                continue
            fused[key] = known.model_copy(
                update={
                    "sub_questions": [*known.sub_questions, index],
                    "dense": _best(known.dense, passage.dense),
                    "sparse": _best(known.sparse, passage.sparse),
                }
            )
    ranked = sorted(fused, key=lambda key: (-scores[key], key))
    return [fused[key].model_copy(update={"score": scores[key]}) for key in ranked]


def _best(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def drop_duplicates(passages: Sequence[Passage]) -> list[Passage]:
    """The passages without near-copies of a better-ranked one (repeated notes, mirrors)."""
    kept: list[Passage] = []
    word_sets: list[set[str]] = []
    for passage in passages:
        own = set(words(passage.text))
        if any(_jaccard(own, other) >= DUPLICATE_JACCARD for other in word_sets):
            continue
        kept.append(passage)
        word_sets.append(own)
    return kept


def _term_vector(passage: Passage) -> dict[int, float]:
    """The passage's BM25 term weights, L2-normalized."""
    vector = encode_document(passage.text, passage.language)
    norm = math.sqrt(sum(v * v for v in vector.values)) or 1.0
    return {i: v / norm for i, v in zip(vector.indices, vector.values, strict=True)}


def _cosine(a: dict[int, float], b: dict[int, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(i, 0.0) for i, v in a.items())


def select_passages(
    passages: Sequence[Passage],
    n: int,
    language: ReportLanguage,
    mmr_lambda: float = MMR_LAMBDA,
) -> list[Passage]:
    """Up to `n` passages chosen greedily by MMR, in the order chosen (most relevant first)."""
    if not passages or n <= 0:
        return []
    top = max(p.score for p in passages) or 1.0
    relevance = [
        p.score / top * (1.0 if p.language in (language, "other") else OTHER_LANGUAGE_FACTOR)
        for p in passages
    ]
    vectors = [_term_vector(p) for p in passages]
    chosen: list[int] = []
    left = list(range(len(passages)))
    while left and len(chosen) < n:

        def gain(i: int) -> float:
            redundancy = max((_cosine(vectors[i], vectors[j]) for j in chosen), default=0.0)
            return mmr_lambda * relevance[i] - (1 - mmr_lambda) * redundancy

        best = max(left, key=lambda i: (gain(i), -i))
        chosen.append(best)
        left.remove(best)
    return [passages[i] for i in chosen]


def passage_budget(depth: int) -> int:
    """Passages a report of this depth reads: two per level plus two."""
    return 2 * depth + 2


def distinct_passages(results: Sequence[SubQuestionHits]) -> int:
    """How many different passages the sub-questions retrieved together."""
    return len({p.chunk_id for result in results for p in result.passages})
