"""Reindex through Prefect's harness, a real Dask cluster, the real model and the embedded store."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prefect.client.orchestration import get_client

from core.ops_models import ReindexItem
from core.search import hybrid_search
from core.settings import get_settings
from core.store import VectorStore, get_store
from flows.ingest import ingest_documents
from flows.reindex import reindex_collection
from tasks.reindex import compare_versions, plan_reindex, start_version
from tasks.runs import DEAD_LETTER_TAG
from tests.core.test_store import make_points
from tests.docgen import make_pdf, write_text

TOPICS = [
    ("firewall", "The firewall blocks incoming connections except SSH and HTTPS."),
    ("backup", "The nightly backup keeps seven daily copies on external storage."),
    ("kernel", "Set vm.swappiness to ten so the kernel swaps less under memory pressure."),
    ("network", "The eth0 interface gets its address from DHCP at boot time."),
    ("printing", "CUPS serves the office printers and keeps a queue per printer."),
    ("mail", "Postfix relays outgoing mail through the provider's smarthost."),
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Six documents of a few chunks each, one of them a PDF."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, sentence in TOPICS[:-1]:
        paragraphs = "\n\n".join(f"{sentence} Note {i} about {name}." for i in range(12))
        write_text(folder / f"{name}.md", f"# {name.title()}\n\n{paragraphs}\n")
    make_pdf(folder / "mail.pdf", [["# Mail", TOPICS[-1][1]]], title="Mail relay")
    return folder


@pytest.fixture
def indexed(stack_env: Path, corpus: Path) -> Iterator[VectorStore]:
    """The corpus ingested for tenant acme, and the store."""
    report = ingest_documents(paths=[str(corpus)], tenant="acme")
    assert report.indexed == len(TOPICS)
    store = get_store()
    yield store
    store.close()


def _live(store: VectorStore) -> str:
    return next(v.name for v in store.versions() if v.live)


def test_reindex_skipped_when_model_and_chunking_unchanged(indexed: VectorStore) -> None:
    report = reindex_collection()
    assert report.action == "skipped"
    assert report.documents == len(TOPICS)
    assert [v.name for v in indexed.versions()] == ["octavius_v1"]


def test_reindex_forced_swaps_while_searches_and_ingestion_run(
    indexed: VectorStore, tmp_path: Path
) -> None:
    before = {(t, d.doc_id, d.chunk_count) for t in ["acme"] for d in indexed.documents(t).values()}
    (tmp_path / "corpus" / "mail.pdf").unlink()  # rebuilt from its stored chunk texts
    vector = np.random.default_rng(0).standard_normal(384)
    vector = (vector / np.linalg.norm(vector)).tolist()
    stop = threading.Event()
    failures: list[str] = []
    searches = 0

    def search_forever() -> None:
        nonlocal searches
        store = get_store(get_settings())
        while not stop.is_set():
            try:
                sparse = hybrid_search(
                    "firewall connections", tenant="acme", k=3, mode="sparse", language="en"
                )
                dense = store.search_dense(vector, tenant="acme", k=3)
            except Exception as exc:  # any error during the swap is a failure
                failures.append(repr(exc))
                continue
            searches += 1
            if not sparse or "firewall" not in sparse[0].text or len(dense) != 3:
                failures.append(f"empty or wrong answer: {sparse[:1]} {len(dense)}")

    late = tmp_path / "late"
    late.mkdir()
    write_text(late / "late.md", "# Late\n\nZebras arrived while the collection was rebuilt.\n")
    ingested: list[int] = []

    def ingest_when_building() -> None:
        store = get_store(get_settings())
        while not stop.is_set() and not any(v.building for v in store.versions()):
            stop.wait(0.05)
        ingested.append(ingest_documents(paths=[str(late)], tenant="acme").indexed)

    searcher = threading.Thread(target=search_forever)
    ingester = threading.Thread(target=ingest_when_building)
    searcher.start()
    ingester.start()
    try:
        report = reindex_collection(force=True)
        ingester.join(timeout=300)
    finally:
        stop.set()
        searcher.join()
        ingester.join()
    assert failures == []
    assert searches > 0
    assert ingested == [1]
    assert (report.action, report.previous_version, report.live_version) == (
        "reindexed",
        "octavius_v1",
        "octavius_v2",
    )
    assert report.samples is not None
    assert report.samples.queries == report.samples.answered == 5
    assert report.from_stored_text == 1
    assert report.reparsed >= len(TOPICS) - 1
    assert _live(indexed) == "octavius_v2"
    # every document, the late one included, is whole in the new version
    after = {(t, d.doc_id, d.chunk_count) for t in ["acme"] for d in indexed.documents(t).values()}
    assert before < after
    assert len(after - before) == 1
    assert compare_versions(indexed, "octavius_v2", get_settings()).empty
    hits = hybrid_search("zebras arrived", tenant="acme", k=1, mode="sparse", language="en")
    assert hits and "Zebras" in hits[0].text
    # the previous version is kept for rollback
    assert {v.name: v.retired_at is not None for v in indexed.versions()} == {
        "octavius_v1": True,
        "octavius_v2": False,
    }

    rolled = reindex_collection(rollback=True)
    assert (rolled.action, rolled.live_version, rolled.previous_version) == (
        "rolled_back",
        "octavius_v1",
        "octavius_v2",
    )
    assert _live(indexed) == "octavius_v1"
    assert hybrid_search("firewall", tenant="acme", k=1, mode="sparse", language="en")


def test_writes_during_build_reach_the_new_version(indexed: VectorStore, tmp_path: Path) -> None:
    settings = get_settings()
    version = start_version(indexed, 384, owner=None)
    # an ingestion while the version is being built: mirrored to it
    extra = tmp_path / "extra"
    extra.mkdir()
    write_text(extra / "extra.md", "# Extra\n\nOwls hunt at night in the old barn.\n")
    ingest_documents(paths=[str(extra)], tenant="acme")
    diff = compare_versions(indexed, version.name, settings)
    # the rebuild has not run yet: the six older documents are missing, the new one is not
    rebuild = {item.document.source for item in diff.to_rebuild}
    assert len(rebuild) == len(TOPICS)
    assert not any(source.endswith("extra.md") for source in rebuild)
    assert indexed.at(version.name).count("acme") == indexed.count(
        "acme",
    ) - sum(
        d.chunk_count
        for d in indexed.documents("acme").values()
        if not d.source.endswith("extra.md")
    )
    # a document deleted from the live version is deleted from the new one too
    extra_id = next(
        d.doc_id for d in indexed.documents("acme").values() if d.source.endswith("extra.md")
    )
    indexed.delete_documents("acme", [extra_id])
    assert indexed.at(version.name).count("acme") == 0
    indexed.drop_version(version.name)


def test_reindex_failure_leaves_alias_and_marks_dead_letter(indexed: VectorStore) -> None:
    # a document whose stored chunks are incomplete and whose source is unknown never catches up
    broken = make_points("acme", "broken-doc", 3)[:2]
    indexed.upsert(broken)
    state = reindex_collection(force=True, return_state=True)
    assert state.is_failed()
    assert "did not catch up" in (state.message or "")
    assert _live(indexed) == "octavius_v1"
    assert [v.name for v in indexed.versions()] == ["octavius_v1"]  # nothing half-built left
    assert hybrid_search("firewall", tenant="acme", k=1, mode="sparse", language="en")
    run_id = state.state_details.flow_run_id
    assert run_id is not None

    async def tags() -> list[str]:
        async with get_client() as client:
            return (await client.read_flow_run(run_id)).tags

    import asyncio

    assert DEAD_LETTER_TAG in asyncio.run(tags())


def test_half_built_version_of_dead_run_dropped_by_next_reindex(indexed: VectorStore) -> None:
    leftover = indexed.create_version(384, owner=str(uuid.uuid4()))  # its run does not exist
    indexed.at(leftover.name).upsert(make_points("acme", "partial", 2))
    version = start_version(indexed, 384, owner="me")
    assert [(v.name, v.building) for v in indexed.versions()] == [
        ("octavius_v1", False),
        (version.name, True),
    ]
    assert indexed.at(version.name).count() == 0  # the leftover points went with it


def test_plan_lists_every_document_and_stale_ones(indexed: VectorStore) -> None:
    settings = get_settings()
    plan = plan_reindex(indexed, settings, force=False)
    assert (plan.needed, plan.stale, len(plan.items)) == (False, 0, len(TOPICS))
    changed = settings.model_copy(update={"chunk_tokens": 120})
    plan = plan_reindex(indexed, changed, force=False)
    assert (plan.needed, plan.stale) == (True, len(TOPICS))
    assert all(isinstance(item, ReindexItem) for item in plan.items)
