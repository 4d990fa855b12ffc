"""Passages built by hand for the research unit tests."""

from __future__ import annotations

from core.models import Language
from core.research_models import Passage, SubQuestionHits


def passage(
    chunk: int,
    text: str,
    *,
    score: float = 1.0,
    doc: str = "doc-1",
    language: Language = "en",
    pages: list[int] | None = None,
    sub_questions: list[int] | None = None,
) -> Passage:
    """A passage of document `doc` at chunk number `chunk`."""
    return Passage(
        chunk_id=f"{doc}-{chunk}",
        doc_id=doc,
        chunk_index=chunk,
        document=f"{doc}.html",
        title=f"Title of {doc}",
        pages=pages or [],
        heading_path=["Chapter", f"Section {chunk}"],
        language=language,
        text=text,
        score=score,
        sub_questions=sub_questions if sub_questions is not None else [0],
    )


def hits(
    question: str, passages: list[Passage], dense: float = 0.0, coverage: float = 0.0
) -> SubQuestionHits:
    """What a sub-question retrieved."""
    return SubQuestionHits(
        sub_question=question,
        passages=passages,
        top_dense=dense,
        top_sparse=None,
        coverage=coverage,
    )
