"""The extractive writer, the nothing-found answer and the parse of an LLM's draft."""

from __future__ import annotations

import pytest

from core.research_models import ReportLanguage
from tasks.research.citations import check_citations
from tasks.research.pipeline import read, write
from tasks.research.writing import (
    DraftParseError,
    best_sentences,
    nothing_found_draft,
    parse_draft,
    sentences,
    write_extractive,
    writer_messages,
)
from tests.tasks.research.helpers import hits, passage

QUESTION = "How do I save my netfilter firewall rules and restore them after a reboot?"
FIREWALL = (
    "Netfilter provides infrastructure for stateful firewall.\n\n"
    "Main user space program of netfilter is iptables(8). You can save its state with "
    "iptables-save(8), and restore it with iptables-restore(8) upon system reboot."
)
UNRELATED = "The GRUB splash image is set with GRUB_BACKGROUND."


def test_sentences_split_lines_and_sentence_ends() -> None:
    assert sentences(FIREWALL) == [
        "Netfilter provides infrastructure for stateful firewall.",
        "Main user space program of netfilter is iptables(8).",
        "You can save its state with iptables-save(8), and restore it with "
        "iptables-restore(8) upon system reboot.",
    ]


def test_best_sentence_is_the_one_that_answers() -> None:
    best = best_sentences(QUESTION, [QUESTION], passage(1, FIREWALL), limit=1)
    assert best == [sentences(FIREWALL)[2]]


def test_extractive_report_cites_the_passage_of_each_sentence() -> None:
    passages = [passage(1, FIREWALL), passage(2, UNRELATED)]
    draft = write_extractive(QUESTION, "en", [QUESTION], passages)
    assert "iptables-save(8)" in draft.summary
    assert draft.summary.startswith("From 1 passage(s) of 1 document(s)")
    checked = check_citations(draft, passages)
    # the passage sharing no term with the question is not used to pad the report
    assert [c.chunk_index for c in checked.citations] == [1]
    assert checked.dropped == []


@pytest.mark.parametrize(
    ("query", "language", "phrase"),
    [
        ("What is the capital of France?", "en", "I found nothing relevant"),
        ("¿Cuál es la receta de la paella?", "es", "No he encontrado nada relevante"),
    ],
)
def test_nothing_found_says_so_in_the_question_language(
    query: str, language: ReportLanguage, phrase: str
) -> None:
    draft = nothing_found_draft(query, language)
    assert phrase in draft.summary
    assert query in draft.summary
    assert draft.sections == []


def test_read_finds_nothing_below_the_thresholds_and_write_does_not_pad() -> None:
    weak = hits(QUESTION, [passage(1, UNRELATED)], dense=0.2, coverage=0.2)
    passages, read_count, found = read([weak], "en", depth=3)
    assert (passages, read_count, found) == ([], 1, False)
    checked, writer = write(QUESTION, "en", [QUESTION], passages, client=None)
    assert checked.citations == []
    assert checked.summary.startswith("I found nothing relevant")
    assert writer == "extractive"


@pytest.mark.parametrize(
    ("dense", "coverage", "language", "found"),
    [
        # English: a close dense match is enough
        (0.5, 0.0, "en", True),
        # English: neither signal
        (0.3, 0.3, "en", False),
        # Spanish: the English-only model's cosine alone is not trusted
        (0.6, 0.3, "es", False),
        # Spanish: most of the question's terms in one passage
        (0.3, 0.7, "es", True),
    ],
)
def test_read_decides_found_by_the_calibrated_thresholds(
    dense: float, coverage: float, language: ReportLanguage, found: bool
) -> None:
    result = hits(QUESTION, [passage(1, FIREWALL)], dense=dense, coverage=coverage)
    assert read([result], language, depth=3)[2] is found


def test_writer_prompt_numbers_the_passages_and_asks_for_the_language() -> None:
    messages = writer_messages(
        "¿Cómo guardo las reglas?", "es", ["¿Cómo guardo las reglas?"], [passage(1, FIREWALL)]
    )
    assert "español" in messages[0].content
    assert "[n]" in messages[0].content
    assert "[1] (doc-1.html)" in messages[1].content


@pytest.mark.parametrize(
    ("reply", "summary", "headings"),
    [
        # the JSON asked for
        (
            '{"summary": "S [1].", "sections": [{"heading": "H", "text": "T [2]."}]}',
            "S [1].",
            ["H"],
        ),
        # fenced JSON
        ('```json\n{"summary": "S [1]."}\n```', "S [1].", []),
        # markdown instead of JSON: text before the first heading is the summary
        ("Answer [1].\n\n## Details\n\nMore [2].", "Answer [1].", ["Details"]),
    ],
)
def test_parse_draft(reply: str, summary: str, headings: list[str]) -> None:
    draft = parse_draft(reply)
    assert draft.summary == summary
    assert [s.heading for s in draft.sections] == headings


@pytest.mark.parametrize(
    "reply", ["", "   ", '{"sections": []}', '{"summary": "S", "sections": [1]}']
)
def test_parse_draft_rejects_unusable_replies(reply: str) -> None:
    with pytest.raises(DraftParseError):
        parse_draft(reply)
