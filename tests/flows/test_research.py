"""Deep research through Prefect's harness on real Debian Reference text ingested by the test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selectolax.lexbor import LexborHTMLParser

from core.research_models import ResearchReport
from core.settings import get_settings
from core.store import get_store
from flows.ingest import ingest_documents
from flows.research import deep_research
from tasks.research.evaluation import resolved_citations
from tasks.research.report import report_text
from tests.openai_server import ChatServer, Reply, chat_server

CORPUS = Path(__file__).resolve().parents[2] / "benchmarks" / "corpus"
TENANT = "acme"
OTHER = "globex"
#: Sections of the real chapters the corpus is cut from, per language.
SECTIONS = {
    "en": [("ch05.en.html", "5.6."), ("ch03.en.html", "3.8.1.")],
    "es": [("ch05.es.html", "5.6."), ("ch03.es.html", "3.8.1.")],
}
ZEBRA = (
    "The Zebra backup vault rotates its encryption keys every 17 days with the keyrotate "
    "tool, and keeps the retired keys for one year."
)


def _section_html(chapter: str, number: str) -> str:
    """The HTML of one numbered section of a corpus chapter."""
    language = chapter.split(".")[1]
    tree = LexborHTMLParser((CORPUS / language / chapter).read_text(encoding="utf-8"))
    for section in tree.css("div.section"):
        title = section.css_first("h2.title, h3.title")
        if title is not None and " ".join(title.text().split()).startswith(number):
            return str(section.html)
    raise AssertionError(f"{chapter} has no section {number}")


def write_corpus(folder: Path) -> Path:
    """Two real documents, English and Spanish, made of Debian Reference sections."""
    folder.mkdir(parents=True)
    for language, sections in SECTIONS.items():
        body = "\n".join(_section_html(chapter, number) for chapter, number in sections)
        title = "Debian Reference" if language == "en" else "Referencia de Debian"
        (folder / f"reference.{language}.html").write_text(
            f"<html><head><title>{title}</title></head><body>{body}</body></html>",
            encoding="utf-8",
        )
    return folder


@pytest.fixture(scope="module")
def research_home(tmp_path_factory: pytest.TempPathFactory, dask_address: str) -> Iterator[Path]:
    """An OCTAVIUS_HOME where tenant acme holds the corpus and tenant globex one other note."""
    base = tmp_path_factory.mktemp("research")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OCTAVIUS_HOME", str(base / "octavius"))
        patch.setenv("OCTAVIUS_DASK_ADDRESS", dask_address)
        get_settings.cache_clear()
        report = ingest_documents(paths=[str(write_corpus(base / "corpus"))], tenant=TENANT)
        assert report.indexed == 2, report
        other = base / "other"
        other.mkdir()
        (other / "zebra.txt").write_text(ZEBRA, encoding="utf-8")
        assert ingest_documents(paths=[str(other)], tenant=OTHER).indexed == 1
        yield base / "octavius"
    get_settings.cache_clear()


def assert_citations_resolve(report: ResearchReport, tenant: str) -> None:
    """Every citation names a stored passage of the tenant, numbered 1..n, each used in the text."""
    stored = dict(get_store().scroll(tenant))
    assert report.citations
    assert [c.number for c in report.citations] == list(range(1, len(report.citations) + 1))
    assert resolved_citations(report, stored) == len(report.citations)
    assert {c.doc_id for c in report.citations} <= {p.doc_id for p in stored.values()}


def test_spanish_question_gets_a_cited_spanish_report(research_home: Path) -> None:
    query = "¿Cómo guardo las reglas del cortafuegos netfilter y las restauro después de reiniciar?"
    report = deep_research(query=query, tenant=TENANT)
    assert report.language == "es"
    assert not report.nothing_found
    assert report.summary.startswith("Según")
    text = report_text(report)
    assert "iptables-save" in text
    assert "iptables-restore" in text
    assert_citations_resolve(report, TENANT)
    assert set(report.timings) == {"planning", "searching", "reading", "writing"}
    assert len(report.sub_questions) > 1
    assert report.citations[0].document == "reference.es.html"
    assert report.citations[0].link.startswith(f"kb://{report.citations[0].doc_id}/chunks/")


def test_english_question_gets_a_cited_english_report(research_home: Path) -> None:
    query = "Which modules have to be listed in /etc/modules to be loaded at boot?"
    report = deep_research(query=query, tenant=TENANT)
    assert report.language == "en"
    assert not report.nothing_found
    assert "TUN/TAP" in report_text(report)
    assert_citations_resolve(report, TENANT)
    assert (report.planner, report.writer) == ("extractive", "extractive")


def test_out_of_scope_question_says_nothing_relevant(research_home: Path) -> None:
    report = deep_research(
        query="¿Cuál es la receta tradicional de la paella valenciana?", tenant=TENANT
    )
    assert report.nothing_found
    assert report.citations == []
    assert report.sections == []
    assert report.summary.startswith("No he encontrado nada relevante")


def test_another_tenants_documents_are_never_cited(research_home: Path) -> None:
    query = "How often does the Zebra backup vault rotate its encryption keys?"
    theirs = deep_research(query=query, tenant=OTHER)
    assert not theirs.nothing_found
    assert "every 17 days" in report_text(theirs)
    zebra_doc = theirs.citations[0].doc_id
    ours = deep_research(query=query, tenant=TENANT)
    assert zebra_doc not in {c.doc_id for c in ours.citations}
    assert "17 days" not in report_text(ours)
    assert ours.nothing_found


def test_new_documents_are_seen_by_the_next_report(research_home: Path, tmp_path: Path) -> None:
    query = "How often does the Zebra backup vault rotate its encryption keys?"
    tenant = "initech"
    before = deep_research(query=query, tenant=tenant)
    assert before.nothing_found
    (tmp_path / "zebra.txt").write_text(ZEBRA, encoding="utf-8")
    assert ingest_documents(paths=[str(tmp_path)], tenant=tenant).indexed == 1
    after = deep_research(query=query, tenant=tenant)
    assert not after.nothing_found
    assert "every 17 days" in report_text(after)


def _scripted_llm(body: dict[str, Any]) -> Reply:
    """A planner and a writer: the writer cites passage 1, passage 2 and a passage 42."""
    system = body["messages"][0]["content"]
    if "sub_questions" in system:
        plan = ["¿Cómo se guardan las reglas de netfilter?", "¿Cómo se restauran al reiniciar?"]
        return Reply(content=json.dumps({"sub_questions": plan}))
    user = body["messages"][1]["content"]
    assert re.search(r"^\[1\] \(reference\.es\.html\)", user, flags=re.M), user[:500]
    draft = {
        "summary": "Las reglas se guardan con iptables-save [1] y se restauran con "
        "iptables-restore [2]. Además se cifran solas [42].",
        "sections": [{"heading": "Detalles", "text": "Netfilter es la base del cortafuegos [2]."}],
    }
    return Reply(content="```json\n" + json.dumps(draft, ensure_ascii=False) + "\n```")


@pytest.fixture
def llm_server(research_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatServer]:
    """A loopback chat server configured as the research LLM (first answer: 429)."""
    with chat_server(_scripted_llm) as server:
        server.script.append(Reply(status=429, headers={"Retry-After": "0"}))
        monkeypatch.setenv("OCTAVIUS_LLM_BASE_URL", server.url)
        monkeypatch.setenv("OCTAVIUS_LLM_MODEL", "test-model")
        get_settings.cache_clear()
        yield server
        get_settings.cache_clear()


def test_llm_report_drops_a_citation_of_a_passage_that_does_not_exist(
    llm_server: ChatServer,
) -> None:
    query = "¿Cómo guardo las reglas del cortafuegos netfilter y las restauro después de reiniciar?"
    report = deep_research(query=query, tenant=TENANT)
    requests = llm_server.chat_requests()
    # the 429, then the plan, then the report
    assert len(requests) == 3
    assert all(r.path == "/v1/chat/completions" for r in requests)
    assert (report.planner, report.writer) == ("llm", "llm")
    assert report.sub_questions[1:] == [
        "¿Cómo se guardan las reglas de netfilter?",
        "¿Cómo se restauran al reiniciar?",
    ]
    assert report.dropped_citations == ["[42]"]
    assert "[42]" not in report_text(report)
    assert report.summary.endswith("Además se cifran solas.")
    assert [c.number for c in report.citations] == [1, 2]
    assert_citations_resolve(report, TENANT)
