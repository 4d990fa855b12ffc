"""The citation check: unresolved markers removed and logged, the rest renumbered densely."""

from __future__ import annotations

import logging

import pytest

from core.research_models import ReportSection
from tasks.research.citations import Draft, check_citations, cited_numbers
from tests.tasks.research.helpers import passage

PASSAGES = [passage(i, f"Passage number {i}.", pages=[i] if i == 2 else None) for i in range(1, 5)]


def test_check_keeps_resolving_citations_and_renumbers_in_order_of_use() -> None:
    draft = Draft(
        summary="RAID is set in mdadm.conf [3]. Mounts are in fstab [1].",
        sections=[ReportSection(heading="More", text="Again [3], and [4].")],
    )
    checked = check_citations(draft, PASSAGES)
    assert checked.summary == "RAID is set in mdadm.conf [1]. Mounts are in fstab [2]."
    assert checked.sections[0].text == "Again [1], and [3]."
    assert [(c.number, c.chunk_index) for c in checked.citations] == [(1, 3), (2, 1), (3, 4)]
    assert checked.dropped == []


def test_check_drops_citations_of_passages_that_do_not_exist(
    caplog: pytest.LogCaptureFixture,
) -> None:
    draft = Draft(summary="True [2]. Invented [7]. Zero [0]. Mixed [2, 9].")
    with caplog.at_level(logging.WARNING, logger="tasks.research.citations"):
        checked = check_citations(draft, PASSAGES)
    assert checked.summary == "True [1]. Invented. Zero. Mixed [1]."
    assert checked.dropped == ["[7]", "[0]", "[9]"]
    assert [c.chunk_index for c in checked.citations] == [2]
    assert "[7]" in caplog.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # lists and ranges are expanded
        ("A [1, 3]. B [2-4].", "A [1][2]. B [3][2][4]."),
        # an absurd range is dropped whole
        ("C [1-400].", "C."),
    ],
)
def test_check_understands_lists_and_ranges(text: str, expected: str) -> None:
    assert check_citations(Draft(summary=text), PASSAGES).summary == expected


def test_check_strips_markers_from_headings_and_drops_emptied_sections() -> None:
    draft = Draft(
        summary="S [1].",
        sections=[
            ReportSection(heading="Heading [2]", text="T [2]."),
            ReportSection(heading="Empty", text="[9]"),
        ],
    )
    checked = check_citations(draft, PASSAGES)
    assert [(s.heading, s.text) for s in checked.sections] == [("Heading", "T [2].")]


def test_citation_entries_carry_document_page_and_a_stable_link() -> None:
    checked = check_citations(Draft(summary="Paged [2]. Not paged [1]."), PASSAGES)
    paged, flat = checked.citations
    assert (paged.document, paged.page, paged.doc_id, paged.chunk_id) == (
        "doc-1.html",
        2,
        "doc-1",
        "doc-1-2",
    )
    assert paged.link == "kb://doc-1/chunks/2#page=2"
    assert (flat.page, flat.link) == (None, "kb://doc-1/chunks/1")
    assert paged.text == "Passage number 2."


def test_cited_numbers_reads_every_marker() -> None:
    assert cited_numbers("a [1] b [2, 3] c [5-6]") == [1, 2, 3, 5, 6]
