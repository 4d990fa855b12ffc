"""The command line in-process: eval retrieval and search over an index built by the tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.cli import app
from core.embedder import get_embedder
from core.settings import get_settings
from tasks.documents import parse_and_chunk
from tasks.indexing import index_document
from tasks.planning import plan_file
from tests.docgen import write_text

TENANT = "default"


@pytest.fixture
def indexed(octavius_home: Path, tmp_path: Path) -> Path:
    """Two small documents indexed for the default tenant without Prefect."""
    docs = {
        "dns.md": "# DNS\n\nThe resolver configuration lives in /etc/resolv.conf on Debian.\n",
        "red.md": "# Red\n\nLa dirección IP fija se declara en /etc/network/interfaces.\n",
    }
    for name, text in docs.items():
        path = write_text(tmp_path / name, text)
        planned = plan_file(path, TENANT, get_settings())
        document = parse_and_chunk(planned)
        index_document(document, get_embedder().embed_documents(document.embed_texts), TENANT)
    return tmp_path


def test_cli_eval_retrieval_prints_scores_per_mode(indexed: Path) -> None:
    questions = indexed / "q.jsonl"
    questions.write_text(
        json.dumps(
            {
                "query": "where is the DNS resolver configured",
                "answers": ["resolv.conf"],
                "document": "dns.md",
            }
        )
        + "\n"
        + json.dumps(
            {"query": "¿dónde se declara la IP fija?", "answers": ["/etc/network/interfaces"]}
        )
        + "\n"
    )
    result = CliRunner().invoke(app, ["eval", "retrieval", str(questions), "-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["modes"]) == {"dense", "sparse", "fused"}
    assert report["modes"]["fused"]["n"] == 2
    assert report["modes"]["fused"]["recall_at_1"] == 1.0


def test_cli_eval_retrieval_rejects_a_bad_question_file(indexed: Path) -> None:
    questions = indexed / "bad.jsonl"
    questions.write_text('{"query": "x"}\n')
    result = CliRunner().invoke(app, ["eval", "retrieval", str(questions)])
    assert result.exit_code == 2
    assert "bad.jsonl:1" in result.output


def test_cli_search_json_returns_hits_with_document_and_text(indexed: Path) -> None:
    result = CliRunner().invoke(app, ["search", "resolver configuration", "-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    [hit] = json.loads(result.stdout)["hits"]
    assert hit["source"].endswith("dns.md")
    assert "resolv.conf" in hit["text"]
