"""Tests for retrieval evaluation: question files, hit matching and scores."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from core.evaluation import (
    EvalQuestion,
    fold,
    is_hit,
    load_questions,
    score_rankings,
)

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

Q_DPKG = EvalQuestion(
    query="How do I finish half-installed packages?",
    answers=["dpkg --configure -a"],
    document="ch02.en.html",
)
Q_CRYPT = EvalQuestion(query="¿Dónde se configuran los discos cifrados?", answers=["/etc/crypttab"])
Q_ROOT = EvalQuestion(query="Get a root shell at boot", answers=["break=init", "init=/bin/sh"])
QUESTIONS = [Q_DPKG, Q_CRYPT, Q_ROOT]

HIT_DPKG = ("Then run\n  DPKG --configure   -a to finish.", "/corpus/en/ch02.en.html")
HIT_CRYPT = ("Los sistemas cifrados se configuran en « /etc/crypttab ».", "ch03.es.html")
HIT_ROOT = ("Boot with root=/dev/hda6 rw init=/bin/sh and edit the file.", "ch04.en.html")
MISS = ("Nothing relevant here.", "ch05.en.html")


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # case and runs of mixed whitespace collapse to one lower-case space
        ("  Apt-Get\t\nUPDATE  ", "apt-get update"),
        # Spanish capitals keep their accents when folded
        ("GESTIÓN de Paquetes", "gestión de paquetes"),
        # a decomposed accent equals the composed one
        (unicodedata.normalize("NFD", "configuración"), "configuración"),
        # a non-breaking space counts as whitespace
        ("dpkg\u00a0-S", "dpkg -s"),
    ],
)
def test_fold_normalizes(text: str, expected: str) -> None:
    assert fold(text) == expected


@pytest.mark.parametrize(
    ("hit", "question", "expected"),
    [
        # answer found across a line break and odd spacing, source given as a full path
        (HIT_DPKG, Q_DPKG, True),
        # same text from another document than the labelled one
        ((HIT_DPKG[0], "ch03.en.html"), Q_DPKG, False),
        # no document on the question: any source counts
        (HIT_CRYPT, Q_CRYPT, True),
        # the second of two answers is enough
        (HIT_ROOT, Q_ROOT, True),
        # an answer split between two chunks is not in either
        (("Boot with root=/dev/hda6 rw init=", "ch04.en.html"), Q_ROOT, False),
        # unrelated text
        (MISS, Q_CRYPT, False),
    ],
)
def test_is_hit_cases(hit: tuple[str, str], question: EvalQuestion, expected: bool) -> None:
    assert is_hit(hit[0], hit[1], question) is expected


@pytest.mark.parametrize(
    ("rankings", "k", "recall_at_1", "recall_at_k", "mrr_at_10"),
    [
        # every question answered by its top hit
        ([[HIT_DPKG], [HIT_CRYPT, MISS], [HIT_ROOT]], 5, 1.0, 1.0, 1.0),
        # nothing answered, including an empty ranking
        ([[MISS], [], [MISS, MISS]], 5, 0.0, 0.0, 0.0),
        # first hits at ranks 1, 2 and 4 with k=3: recall@3 misses rank 4, MRR=(1+1/2+1/4)/3
        (
            [[HIT_DPKG], [MISS, HIT_CRYPT], [MISS, MISS, MISS, HIT_ROOT]],
            3,
            1 / 3,
            2 / 3,
            (1 + 1 / 2 + 1 / 4) / 3,
        ),
        # a hit at rank 11 counts for recall@20 but not for MRR@10
        ([[*[MISS] * 10, HIT_DPKG], [MISS], [MISS]], 20, 0.0, 1 / 3, 0.0),
        # only the first hit counts: a later repeat does not raise the score
        ([[MISS, HIT_DPKG, HIT_DPKG], [MISS], [MISS]], 1, 0.0, 0.0, 1 / 6),
        # right text from the wrong document is a miss
        ([[(HIT_DPKG[0], "ch02.es.html")], [HIT_CRYPT], [HIT_ROOT]], 1, 2 / 3, 2 / 3, 2 / 3),
    ],
)
def test_score_rankings_figures(
    rankings: list[list[tuple[str, str]]],
    k: int,
    recall_at_1: float,
    recall_at_k: float,
    mrr_at_10: float,
) -> None:
    scores = score_rankings(QUESTIONS, rankings, k=k)
    assert scores.n == 3
    assert scores.k == k
    assert scores.recall_at_1 == pytest.approx(recall_at_1)
    assert scores.recall_at_k == pytest.approx(recall_at_k)
    assert scores.mrr_at_10 == pytest.approx(mrr_at_10)


@pytest.mark.parametrize(
    ("questions", "rankings", "k", "message"),
    [
        # one ranking missing
        (QUESTIONS, [[HIT_DPKG], [HIT_CRYPT]], 5, "2 rankings for 3 questions"),
        # k below 1
        (QUESTIONS, [[], [], []], 0, "k must be at least 1"),
        # nothing to score
        ([], [], 5, "no questions"),
    ],
)
def test_score_rankings_rejects_bad_input(
    questions: list[EvalQuestion],
    rankings: list[list[tuple[str, str]]],
    k: int,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        score_rankings(questions, rankings, k=k)


def test_load_questions_reads_lines_and_skips_blanks(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "q.jsonl",
        [
            json.dumps({"query": "¿Qué es PAM?", "answers": ["pam_unix"]}, ensure_ascii=False),
            "",
            json.dumps({"query": "MTU?", "answers": ["tracepath"], "document": "ch05.en.html"}),
        ],
    )
    questions = load_questions(path)
    assert [q.query for q in questions] == ["¿Qué es PAM?", "MTU?"]
    assert questions[0].document is None
    assert questions[1].document == "ch05.en.html"


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        # truncated JSON
        ('{"query": "x", "answers": [', r"q\.jsonl:2: not valid JSON"),
        # no answers key
        ('{"query": "x"}', r"q\.jsonl:2: answers: Field required"),
        # answers present but empty
        ('{"query": "x", "answers": []}', r"q\.jsonl:2: answers: List should have at least 1"),
        # empty query
        ('{"query": "", "answers": ["a"]}', r"q\.jsonl:2: query: String should have at least 1"),
        # a JSON value that is not an object
        ('["x"]', r"q\.jsonl:2: line: Input should be"),
    ],
)
def test_load_questions_reports_bad_line(tmp_path: Path, bad_line: str, message: str) -> None:
    good = json.dumps({"query": "ok", "answers": ["a"]})
    path = _write_lines(tmp_path / "q.jsonl", [good, bad_line, good])
    with pytest.raises(ValueError, match=message):
        load_questions(path)


def test_load_questions_rejects_empty_file(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "q.jsonl", ["", "  "])
    with pytest.raises(ValueError, match="no questions"):
        load_questions(path)


@pytest.mark.parametrize("name", ["retrieval_en.jsonl", "retrieval_es.jsonl"])
def test_load_questions_shipped_benchmarks(name: str) -> None:
    questions = load_questions(BENCHMARKS / name)
    assert len(questions) >= 40
    assert all(q.document for q in questions)
