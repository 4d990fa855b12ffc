"""Retrieval evaluation: labelled questions, hit matching and ranking scores."""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from core.search import hybrid_search

logger = logging.getLogger(__name__)

MRR_CUTOFF = 10
SEARCH_MODES = ("dense", "sparse", "fused")


class EvalQuestion(BaseModel):
    """One labelled question: a query and the spans that mark a passage answering it."""

    query: str = Field(min_length=1, max_length=2000, description="The question as a user asks it.")
    answers: list[str] = Field(
        min_length=1,
        description="Short spans found verbatim in the answering passage; any one marks a hit.",
    )
    document: str | None = Field(
        default=None,
        description="File name of the document holding the answer; hits elsewhere do not count.",
    )


class RetrievalScores(BaseModel):
    """Recall and reciprocal-rank figures over a set of questions."""

    n: int = Field(ge=1, description="Number of questions scored.")
    k: int = Field(ge=1, description="Cut-off used for recall_at_k.")
    recall_at_1: float = Field(
        ge=0, le=1, description="Share of questions answered by the top hit."
    )
    recall_at_k: float = Field(ge=0, le=1, description="Share of questions answered in the top k.")
    mrr_at_10: float = Field(
        ge=0, le=1, description="Mean of 1/rank of the first answering hit in the top 10, else 0."
    )


def load_questions(path: Path) -> list[EvalQuestion]:
    """Return the questions of a JSON Lines file, one object per non-blank line."""
    questions: list[EvalQuestion] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                questions.append(EvalQuestion.model_validate(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, err['loc'])) or 'line'}: {err['msg']}"
                    for err in exc.errors()
                )
                raise ValueError(f"{path}:{number}: {problems}") from exc
    if not questions:
        raise ValueError(f"{path}: no questions")
    logger.debug("Loaded %d questions from %s", len(questions), path)
    return questions


def fold(text: str) -> str:
    """Return text in NFKC form, case-folded, with every whitespace run made one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def is_hit(hit_text: str, hit_source: str, q: EvalQuestion) -> bool:
    """Return whether a hit contains one of the answers, from the expected document if given."""
    if q.document is not None and Path(hit_source).name != q.document:
        return False
    text = fold(hit_text)
    return any(fold(answer) in text for answer in q.answers)


def first_hit_rank(ranking: Sequence[tuple[str, str]], q: EvalQuestion) -> int | None:
    """Return the 1-based rank of the first hit that answers q, or None when none does."""
    for rank, (text, source) in enumerate(ranking, start=1):
        if is_hit(text, source, q):
            return rank
    return None


def score_rankings(
    questions: Sequence[EvalQuestion],
    rankings: Sequence[Sequence[tuple[str, str]]],
    k: int,
) -> RetrievalScores:
    """Return recall@1, recall@k and MRR@10 of rankings of (text, source) hits, one per question."""
    if not questions:
        raise ValueError("no questions to score")
    if len(rankings) != len(questions):
        raise ValueError(f"{len(rankings)} rankings for {len(questions)} questions")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ranks = [first_hit_rank(ranking, q) for q, ranking in zip(questions, rankings, strict=True)]
    n = len(ranks)
    return RetrievalScores(
        n=n,
        k=k,
        recall_at_1=sum(rank == 1 for rank in ranks) / n,
        recall_at_k=sum(rank is not None and rank <= k for rank in ranks) / n,
        mrr_at_10=sum(1 / rank for rank in ranks if rank is not None and rank <= MRR_CUTOFF) / n,
    )


class RetrievalReport(BaseModel):
    """Scores of every search mode on one question set."""

    modes: dict[str, RetrievalScores]


def evaluate_retrieval(
    questions: Sequence[EvalQuestion], *, tenant: str, k: int, modes: Sequence[str] = SEARCH_MODES
) -> RetrievalReport:
    """Runs every question through each search mode and scores the rankings."""
    depth = max(k, 10)
    scores: dict[str, RetrievalScores] = {}
    for mode in modes:
        rankings = [
            [
                (hit.text, hit.source)
                for hit in hybrid_search(q.query, tenant=tenant, k=depth, mode=mode)  # type: ignore[arg-type]
            ]
            for q in questions
        ]
        scores[mode] = score_rankings(questions, rankings, k)
    return RetrievalReport(modes=scores)
