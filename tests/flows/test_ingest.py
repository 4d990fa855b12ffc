"""The ingestion flow through Prefect's harness, a real Dask cluster, the real model and store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.models import DocumentStatus, FailureReason, IngestReport
from core.search import hybrid_search
from core.settings import get_settings
from core.store import get_store
from flows.ingest import ingest_documents
from tests.docgen import (
    make_corrupt_pdf,
    make_docx,
    make_image_only_pdf,
    make_pdf,
    make_zip,
    write_text,
)

ES_PARAGRAPH = (
    "La copia de seguridad del servidor se ejecuta cada noche a las dos de la madrugada y "
    "conserva siete copias diarias en el almacenamiento externo."
)
EN_PARAGRAPH = (
    "The firewall blocks every incoming connection except SSH on port 22 and HTTPS on port "
    "443, and logs rejected packets to the system journal."
)


def _by_source(report: IngestReport) -> dict[str, tuple[DocumentStatus, FailureReason | None]]:
    return {Path(d.source).name: (d.status, d.reason) for d in report.documents}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder of good documents in every format plus every kind of bad input."""
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    make_pdf(
        folder / "manual.pdf",
        [["# Copias de seguridad", ES_PARAGRAPH], ["# Firewall", EN_PARAGRAPH]],
        title="Manual de operaciones",
    )
    make_docx(
        folder / "sub" / "policy.docx",
        [("Heading 1", "Password policy"), ("Normal", "Passwords expire after ninety days.")],
    )
    write_text(
        folder / "page.html",
        "<html><head><title>Red</title><script>var x=1;</script></head><body>"
        "<h1>Configuración de red</h1><p>La interfaz eth0 obtiene su dirección por DHCP.</p>"
        "</body></html>",
    )
    write_text(folder / "notes.md", "# Kernel\n\nSet vm.swappiness to 10 to reduce swapping.\n")
    write_text(
        folder / "leeme.txt",
        "Instalación rápida: ejecute el guion de arranque con privilegios de administración.",
        encoding="latin-1",
    )
    make_pdf(folder / "secret.pdf", ["confidential"], encrypt_password="s3cret")
    make_corrupt_pdf(folder / "broken.pdf")
    make_image_only_pdf(folder / "scan.pdf")
    (folder / "empty.txt").write_bytes(b"")
    make_zip(folder / "archive.zip", {"a.txt": "hello"})
    (folder / ".hidden.md").write_text("# ignored\n\nhidden files are skipped\n")
    return folder


def test_ingest_mixed_batch_reports_each_document(stack_env: Path, corpus: Path) -> None:
    report = ingest_documents(paths=[str(corpus)], tenant="acme")
    assert _by_source(report) == {
        # good documents of every format
        "manual.pdf": (DocumentStatus.INDEXED, None),
        "policy.docx": (DocumentStatus.INDEXED, None),
        "page.html": (DocumentStatus.INDEXED, None),
        "notes.md": (DocumentStatus.INDEXED, None),
        "leeme.txt": (DocumentStatus.INDEXED, None),
        # bad input: a failed line with the reason, the batch carries on
        "secret.pdf": (DocumentStatus.FAILED, FailureReason.ENCRYPTED),
        "broken.pdf": (DocumentStatus.FAILED, FailureReason.CORRUPT),
        "scan.pdf": (DocumentStatus.FAILED, FailureReason.NO_TEXT),
        "empty.txt": (DocumentStatus.FAILED, FailureReason.EMPTY),
        "archive.zip": (DocumentStatus.FAILED, FailureReason.UNSUPPORTED),
    }
    manual = next(d for d in report.documents if d.source.endswith("manual.pdf"))
    assert (manual.title, manual.pages) == ("Manual de operaciones", 2)
    assert all(d.error for d in report.documents if d.status is DocumentStatus.FAILED)
    store = get_store()
    stored = {Path(p.source).name for _, p in store.scroll("acme")}
    assert stored == {"manual.pdf", "policy.docx", "page.html", "notes.md", "leeme.txt"}
    assert report.chunks_embedded == store.count("acme")
    pages = {
        p.text.split()[0]: p.pages for _, p in store.scroll("acme") if p.source.endswith(".pdf")
    }
    assert set(map(tuple, pages.values())) <= {(1,), (2,), (1, 2)}
    spanish = hybrid_search("¿cuándo se hace la copia de seguridad?", tenant="acme", k=3)
    assert "copia de seguridad" in spanish[0].text
    assert spanish[0].pages == [1]
    english = hybrid_search("which ports does the firewall allow", tenant="acme", k=3)
    assert "firewall" in english[0].text.lower()
    assert english[0].pages == [2]
    assert hybrid_search("firewall", tenant="other-tenant", k=3) == []


def test_ingest_twice_leaves_exactly_the_same_points(stack_env: Path, corpus: Path) -> None:
    first = ingest_documents(paths=[str(corpus)], tenant="acme")
    before = sorted(get_store().scroll("acme"), key=lambda item: item[0])
    second = ingest_documents(paths=[str(corpus)], tenant="acme")
    after = sorted(get_store().scroll("acme"), key=lambda item: item[0])
    assert first.indexed == 5
    assert (second.indexed, second.unchanged, second.chunks_embedded) == (0, 5, 0)
    assert [pid for pid, _ in after] == [pid for pid, _ in before]
    assert [p.model_dump() for _, p in after] == [p.model_dump() for _, p in before]


def test_ingest_changed_document_replaces_its_chunks(stack_env: Path, tmp_path: Path) -> None:
    doc = write_text(tmp_path / "guide.md", "# Guide\n\nThe old procedure uses telnet.\n")
    ingest_documents(paths=[str(doc)], tenant="acme")
    write_text(doc, "# Guide\n\nThe new procedure uses ssh with keys only.\n")
    report = ingest_documents(paths=[str(doc)], tenant="acme")
    assert _by_source(report) == {"guide.md": (DocumentStatus.INDEXED, None)}
    texts = [p.text for _, p in get_store().scroll("acme")]
    assert any("ssh with keys" in t for t in texts)
    assert not any("telnet" in t for t in texts)
    assert len({p.version for _, p in get_store().scroll("acme")}) == 1


def test_ingest_broken_update_keeps_the_indexed_version(stack_env: Path, tmp_path: Path) -> None:
    doc = make_pdf(tmp_path / "report.pdf", [EN_PARAGRAPH])
    ingest_documents(paths=[str(doc)], tenant="acme")
    before = get_store().scroll("acme")
    make_corrupt_pdf(doc)
    report = ingest_documents(paths=[str(doc)], tenant="acme")
    assert _by_source(report) == {"report.pdf": (DocumentStatus.FAILED, FailureReason.CORRUPT)}
    assert get_store().scroll("acme") == before


def test_ingest_prune_removes_vanished_documents(stack_env: Path, tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    keep = write_text(folder / "keep.md", "# Keep\n\nThis document stays in the index.\n")
    gone = write_text(folder / "gone.md", "# Gone\n\nThis document will be deleted.\n")
    ingest_documents(paths=[str(folder)], tenant="acme")
    gone.unlink()
    without_prune = ingest_documents(paths=[str(folder)], tenant="acme")
    assert without_prune.removed == 0
    assert len(get_store().documents("acme")) == 2
    pruned = ingest_documents(paths=[str(folder)], tenant="acme", prune=True)
    assert _by_source(pruned) == {
        "keep.md": (DocumentStatus.UNCHANGED, None),
        "gone.md": (DocumentStatus.REMOVED, None),
    }
    assert [d.source for d in get_store().documents("acme").values()] == [str(keep.resolve())]


def test_ingest_oversize_and_missing_paths_fail_cleanly(
    stack_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCTAVIUS_MAX_FILE_MB", "0.01")
    get_settings.cache_clear()
    big = write_text(tmp_path / "big.txt", "word " * 5000)
    small = write_text(tmp_path / "small.txt", "A small file about DNS resolvers.")
    report = ingest_documents(
        paths=[str(big), str(small), str(tmp_path / "nowhere.pdf")], tenant="acme"
    )
    assert _by_source(report) == {
        "big.txt": (DocumentStatus.FAILED, FailureReason.TOO_LARGE),
        "small.txt": (DocumentStatus.INDEXED, None),
        "nowhere.pdf": (DocumentStatus.FAILED, FailureReason.NOT_FOUND),
    }


def test_ingest_emits_progress_events_in_order(stack_env: Path, corpus: Path) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from deployments.names import PROGRESS_EVENT

    state = ingest_documents(paths=[str(corpus)], tenant="acme", return_state=True)
    flow_run_id = state.state_details.flow_run_id

    async def read() -> list[dict]:
        async with get_client() as client:
            page = await client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=[PROGRESS_EVENT]),
                    resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
                ),
                limit=50,
            )
            return [e.payload for e in sorted(page.events, key=lambda e: e.occurred)]

    deadline = time.monotonic() + 30
    payloads = asyncio.run(read())
    while (not payloads or payloads[-1]["percent"] < 100) and time.monotonic() < deadline:
        time.sleep(1)
        payloads = asyncio.run(read())
    stages = [p["stage"] for p in payloads]
    assert stages[0] == "planning"
    assert "parsing" in stages and "embedding" in stages
    assert [p["percent"] for p in payloads] == sorted(p["percent"] for p in payloads)
    assert payloads[-1]["percent"] == 100.0
    assert any(p["message"].startswith("Embedded ") for p in payloads)


def test_ingest_repairs_a_write_that_died_between_versions(stack_env: Path, tmp_path: Path) -> None:
    from tasks.indexing import build_points

    doc = write_text(tmp_path / "faq.md", "# FAQ\n\nReboot the router to apply the settings.\n")
    ingest_documents(paths=[str(doc)], tenant="acme")
    store = get_store()
    [(_, payload)] = store.scroll("acme")
    # Simulate a run that wrote a new version and died before deleting the old one.
    orphan = build_points(_chunked_like(payload, version="dead-run-version"), [[0.1] * 384], "acme")
    store.upsert(orphan)
    assert store.documents("acme")[payload.doc_id].mixed_versions
    report = ingest_documents(paths=[str(doc)], tenant="acme")
    assert _by_source(report) == {"faq.md": (DocumentStatus.INDEXED, None)}
    assert {p.version for _, p in store.scroll("acme")} == {payload.version}
    assert store.count("acme") == 1


def _chunked_like(payload, version: str):  # type: ignore[no-untyped-def]
    from core.models import Chunk, ChunkedDocument

    return ChunkedDocument(
        doc_id=payload.doc_id,
        source=payload.source,
        format=payload.format,
        content_hash=payload.content_hash,
        version=version,
        title=payload.title,
        language=payload.language,
        page_count=payload.page_count,
        chunks=[
            Chunk(
                doc_id=payload.doc_id,
                chunk_index=0,
                text=payload.text,
                char_start=0,
                char_end=len(payload.text),
                token_count=5,
            )
        ],
        embed_texts=[payload.text],
    )
