"""Sub-questions from the query's own structure, and the strict parse of an LLM plan."""

from __future__ import annotations

import pytest

from core.research_models import ReportLanguage
from tasks.research.planning import (
    PlanParseError,
    key_terms,
    parse_plan,
    plan_extractive,
    split_clauses,
)


def test_plan_starts_with_the_question_itself() -> None:
    query = "How do I save my netfilter firewall rules and restore them after a reboot?"
    assert plan_extractive(query, "en", depth=3)[0] == query


@pytest.mark.parametrize(
    ("query", "language", "expected"),
    [
        # coordinated actions: the second part takes the question's frame
        (
            "How do I save my netfilter firewall rules and restore them after a reboot?",
            "en",
            [
                "How do I save my netfilter firewall rules",
                "How do I restore them after a reboot?",
            ],
        ),
        # a coordinated noun phrase also takes the first part's verb
        (
            "How do I configure the hostname of the machine and the network interfaces?",
            "en",
            [
                "How do I configure the hostname of the machine",
                "How do I configure the network interfaces?",
            ],
        ),
        # Spanish "y" splits like "and"
        (
            "¿Cómo guardo las reglas del cortafuegos y las restauro después de reiniciar?",
            "es",
            [
                "¿Cómo guardo las reglas del cortafuegos",
                "¿Cómo las restauro después de reiniciar?",
            ],
        ),
        # two sentences are two clauses
        (
            "Where is software RAID configured? Which file holds mount options?",
            "en",
            ["Where is software RAID configured?", "Which file holds mount options?"],
        ),
        # "apt and apt-get": a part with fewer than two content words does not split
        (
            "What is the difference between apt and apt-get?",
            "en",
            ["What is the difference between apt and apt-get?"],
        ),
    ],
)
def test_split_clauses(query: str, language: ReportLanguage, expected: list[str]) -> None:
    assert split_clauses(query) == expected


def test_plan_respects_depth_and_drops_repeated_term_sets() -> None:
    query = "Where is software RAID configured? Which file holds mount options? How to log?"
    assert len(plan_extractive(query, "en", depth=1)) == 2
    planned = plan_extractive("How do I limit the bandwidth of APT?", "en", depth=3)
    # the key-term query has the same terms as the question: only the question is left
    assert planned == ["How do I limit the bandwidth of APT?"]


def test_key_terms_prefer_technical_tokens_and_keep_query_order() -> None:
    query = "Why does /etc/hosts contain a 127.0.1.1 line on my Debian laptop?"
    assert key_terms(query, limit=2) == ["/etc/hosts", "127.0.1.1"]
    assert key_terms(query, limit=4) == ["/etc/hosts", "contain", "127.0.1.1", "Debian"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        # the object asked for
        ('{"sub_questions": ["a b", "c d"]}', ["a b", "c d"]),
        # wrapped in a markdown fence
        ('```json\n{"sub_questions": ["a b"]}\n```', ["a b"]),
        # a bare list is accepted too
        ('["one two"]', ["one two"]),
    ],
)
def test_parse_plan_accepts_the_json_asked_for(reply: str, expected: list[str]) -> None:
    assert parse_plan(reply, depth=3) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "Sure! Here are some sub-questions: 1. foo 2. bar",  # prose
        '{"questions": ["a"]}',  # wrong key
        '{"sub_questions": []}',  # empty
        '{"sub_questions": ["a", "b", "c", "d"]}',  # more than depth
        '{"sub_questions": ["a", 3]}',  # not a string
        '{"sub_questions": ["  "]}',  # blank
    ],
)
def test_parse_plan_rejects_anything_else(reply: str) -> None:
    with pytest.raises(PlanParseError):
        parse_plan(reply, depth=3)
