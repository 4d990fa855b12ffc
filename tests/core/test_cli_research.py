"""`octavius eval research` in-process over an index built by the tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from core.cli import app
from core.embedder import get_embedder
from core.settings import get_settings
from tasks.documents import parse_and_chunk
from tasks.indexing import index_document
from tasks.planning import plan_file
from tests.docgen import write_text

# Real text of the Debian Reference (benchmarks/corpus/en/ch03.en.html, sections 3.1.2, 3.5.5).
DOCS = {
    "grub.md": "# Boot loader\n\nYou can customize GRUB splash image by setting GRUB_BACKGROUND "
    'variable in "/etc/default/grub" pointing to the image file or placing the image file '
    'itself in "/boot/grub/".\n',
    "raid.md": "# Mounting\n\nThe configuration of software RAID with mdadm(8) is set in "
    '"/etc/mdadm/mdadm.conf". See mdadm.conf(5).\n',
}


@pytest.fixture
def indexed(octavius_home: Path, tmp_path: Path) -> Path:
    """Two small documents indexed for the default tenant without Prefect."""
    for name, text in DOCS.items():
        planned = plan_file(write_text(tmp_path / name, text), "default", get_settings())
        document = parse_and_chunk(planned)
        index_document(document, get_embedder().embed_documents(document.embed_texts), "default")
    return tmp_path


def test_cli_eval_research_prints_the_four_figures(indexed: Path) -> None:
    lines = [
        {"query": "How do I set a background image for GRUB?", "answers": ["GRUB_BACKGROUND"]},
        {"query": "Where is software RAID configured?", "answers": ["mdadm.conf"]},
        {"query": "Who painted the Sistine Chapel ceiling?", "answers": [], "answerable": False},
    ]
    questions = indexed / "q.jsonl"
    questions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = CliRunner().invoke(app, ["eval", "research", str(questions), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert (scores["n"], scores["answerable"], scores["unanswerable"]) == (3, 2, 1)
    assert scores["answer_in_report"] == 1.0
    assert scores["citations"] >= 2
    assert scores["citations_resolved"] == 1.0
    assert scores["nothing_found_accuracy"] == 1.0
    assert scores["median_seconds"] > 0


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        # answerable without answers
        ({"query": "x"}, "at least one answer"),
        # unanswerable with answers
        ({"query": "x", "answers": ["y"], "answerable": False}, "has no answers"),
    ],
)
def test_cli_eval_research_rejects_a_bad_question_file(
    indexed: Path, line: dict[str, Any], problem: str
) -> None:
    questions = indexed / "bad.jsonl"
    questions.write_text(json.dumps(line) + "\n")
    result = CliRunner().invoke(app, ["eval", "research", str(questions)])
    assert result.exit_code == 2
    assert "bad.jsonl:1" in result.output
    assert problem in result.output
