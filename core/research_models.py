"""Typed models of deep research: passages found, citations and the report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.models import Language

ReportLanguage = Literal["es", "en"]


class Passage(BaseModel):
    """A chunk retrieved in a research run, with the scores that found it."""

    chunk_id: str = Field(description="Point id of the chunk in the vector store.")
    doc_id: str
    chunk_index: int = Field(ge=0)
    document: str = Field(description="Source file name of the document.")
    title: str
    pages: list[int] = Field(default_factory=list)
    heading_path: list[str] = Field(default_factory=list)
    language: Language
    text: str
    score: float = Field(description="Fused score over every sub-question that found it.")
    dense: float | None = Field(
        default=None, description="Best cosine similarity to a sub-question, when dense found it."
    )
    sparse: float | None = Field(
        default=None, description="Best BM25 score for a sub-question, when BM25 found it."
    )
    sub_questions: list[int] = Field(
        default_factory=list, description="Indices of the sub-questions that retrieved it."
    )


class SubQuestionHits(BaseModel):
    """What one sub-question retrieved: its fused ranking and the best raw scores."""

    sub_question: str
    passages: list[Passage]
    top_dense: float | None = Field(default=None, description="Best cosine similarity.")
    top_sparse: float | None = Field(default=None, description="Best BM25 score.")
    coverage: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Largest share of the sub-question's search terms found in one of its top "
        "passages.",
    )


class Citation(BaseModel):
    """A numbered source of the report: the passage behind every `[number]` in the text."""

    number: int = Field(ge=1)
    document: str = Field(description="Source file name.")
    title: str
    page: int | None = Field(default=None, description="First page of the passage, if paged.")
    pages: list[int] = Field(default_factory=list)
    heading: str | None = Field(default=None, description="Section the passage sits in.")
    doc_id: str
    chunk_id: str = Field(description="Point id of the passage in the vector store.")
    chunk_index: int = Field(ge=0)
    link: str = Field(
        description="Stable reference to the passage: kb://<doc_id>/chunks/<chunk_index>, "
        "plus #page=N when the document has pages."
    )
    text: str = Field(description="The passage as retrieved.")


class ReportSection(BaseModel):
    """One part of the report, with inline `[n]` citations."""

    heading: str
    text: str


class ResearchReport(BaseModel):
    """Result of a deep-research run."""

    query: str
    tenant: str
    language: ReportLanguage = Field(description="Language the report is written in.")
    summary: str = Field(description="The answer in a few sentences, with `[n]` citations.")
    sections: list[ReportSection] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    sub_questions: list[str] = Field(default_factory=list)
    nothing_found: bool = Field(
        description="The knowledge base held nothing relevant; the summary says so."
    )
    planner: Literal["extractive", "llm"] = "extractive"
    writer: Literal["extractive", "llm"] = "extractive"
    passages_read: int = Field(default=0, ge=0, description="Distinct passages retrieved.")
    dropped_citations: list[str] = Field(
        default_factory=list,
        description="Citation markers the writer produced that named no retrieved passage "
        "and were removed.",
    )
    timings: dict[str, float] = Field(
        default_factory=dict,
        description="Seconds per stage: planning, searching, reading, writing.",
    )
