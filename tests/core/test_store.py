"""Contract tests of both vector stores, and multi-process tests of the embedded one."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from core.models import ChunkPayload, DocumentFormat, Point
from core.sparse import encode_document, encode_query
from core.store import (
    CollectionMissingError,
    StoreBusyError,
    StoreError,
    TransientStoreError,
    VectorStore,
)
from core.store.edge import ALIASES_FILE, EdgeStore
from core.store.retry import call_with_retry, is_transient
from core.store.server import ServerStore

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 384
ALIAS = "kb"
NAMESPACE = uuid.UUID("6c1f0d52-7f0e-4a57-9d38-3b0b4c3b7a11")


def make_points(
    tenant: str,
    doc_id: str,
    count: int,
    *,
    version: str = "v1",
    texts: list[str] | None = None,
    seed: int = 0,
) -> list[Point]:
    """`count` chunks of one document with random unit vectors and deterministic ids."""
    rng = np.random.default_rng(zlib.crc32(f"{tenant}/{doc_id}/{version}/{seed}".encode()))
    dense = rng.standard_normal((count, DIM))
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    points = []
    for i in range(count):
        text = texts[i] if texts else f"chunk {i} of {doc_id} about general topics"
        payload = ChunkPayload(
            tenant=tenant,
            doc_id=doc_id,
            source=f"{doc_id}.txt",
            title=doc_id.title(),
            language="en",
            format=DocumentFormat.TEXT,
            version=version,
            content_hash=f"hash-{version}",
            page_count=1,
            chunk_count=count,
            chunk_index=i,
            text=text,
            pages=[1],
            heading_path=["Intro"],
            char_start=0,
            char_end=len(text),
        )
        point_id = uuid.uuid5(NAMESPACE, f"{tenant}/{doc_id}/{version}/{i}")
        points.append(
            Point(
                id=str(point_id),
                dense=dense[i].tolist(),
                sparse=encode_document(text, "en"),
                payload=payload,
            )
        )
    return points


def edge_store(directory: Path, *, batch_size: int = 7, lock_timeout_s: float = 60) -> EdgeStore:
    """An embedded store in `directory` (a top-level function so spawned workers can call it)."""
    return EdgeStore(directory, ALIAS, lock_timeout_s=lock_timeout_s, batch_size=batch_size)


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """Each implementation, empty: Qdrant Edge, and qdrant-client against local mode."""
    if request.param == "edge":
        made: VectorStore = edge_store(tmp_path / "store")
    else:
        made = ServerStore(QdrantClient(path=str(tmp_path / "qdrant")), ALIAS, batch_size=7)
    yield made
    made.close()


@pytest.fixture
def ready(store: VectorStore) -> VectorStore:
    """A store whose collection exists."""
    store.ensure_collection(DIM)
    return store


def alias_target(store: VectorStore) -> str | None:
    """The physical collection the store's alias points to."""
    if isinstance(store, EdgeStore):
        aliases: dict[str, str] = json.loads((store.directory / ALIASES_FILE).read_text())
        return aliases.get(ALIAS)
    assert isinstance(store, ServerStore)
    found = [a for a in store.client.get_aliases().aliases if a.alias_name == ALIAS]
    return found[0].collection_name if found else None


def test_ensure_collection_idempotent_behind_alias(store: VectorStore) -> None:
    store.ensure_collection(DIM)
    store.upsert(make_points("t1", "doc", 3))
    store.ensure_collection(DIM)
    assert alias_target(store) == f"{ALIAS}_v1"
    assert store.count() == 3


def test_ensure_collection_other_dim_rejected(ready: VectorStore) -> None:
    with pytest.raises(StoreError):
        ready.ensure_collection(DIM // 2)


def test_reads_before_collection_empty(store: VectorStore) -> None:
    assert store.count() == 0
    assert store.documents("t1") == {}
    assert store.scroll("t1") == []
    assert store.search_dense([1.0] * DIM, tenant="t1", k=3) == []
    store.delete_documents("t1", ["doc"])
    with pytest.raises(CollectionMissingError):
        store.upsert(make_points("t1", "doc", 1))


def test_upsert_many_batches_all_stored(ready: VectorStore) -> None:
    points = make_points("t1", "doc", 30)  # batch size 7: five batches
    ready.upsert(points)
    stored = dict(ready.scroll("t1"))
    assert set(stored) == {p.id for p in points}
    assert stored[points[29].id] == points[29].payload


def test_upsert_twice_same_count(ready: VectorStore) -> None:
    points = make_points("t1", "doc", 10)
    ready.upsert(points)
    ready.upsert(points)
    assert ready.count("t1") == 10


def test_search_dense_nearest_first(ready: VectorStore) -> None:
    points = make_points("t1", "doc", 20)
    ready.upsert(points)
    hits = ready.search_dense(points[5].dense, tenant="t1", k=3)
    assert hits[0].point_id == points[5].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].text == points[5].payload.text
    assert hits[0].chunk_index == 5
    assert len(hits) == 3


def test_search_sparse_keyword_match_first(ready: VectorStore) -> None:
    texts = [
        "configure the firewall rules with nftables",
        "install packages with apt",
        "the network interface gets an address by dhcp",
        "mount the disk partition at boot",
    ]
    points = make_points("t1", "doc", 4, texts=texts)
    ready.upsert(points)
    hits = ready.search_sparse(encode_query("firewall rules", "en"), tenant="t1", k=4)
    assert [h.point_id for h in hits] == [points[0].id]
    assert hits[0].score > 0


def test_search_doc_ids_restricts_hits(ready: VectorStore) -> None:
    a, b = make_points("t1", "a", 5), make_points("t1", "b", 5)
    ready.upsert(a + b)
    hits = ready.search_dense(a[0].dense, tenant="t1", k=10, doc_ids=["b"])
    assert {h.doc_id for h in hits} == {"b"}
    assert len(hits) == 5


def test_delete_stale_chunks_keeps_new_version(ready: VectorStore) -> None:
    old = make_points("t1", "doc", 6, version="v1")
    new = make_points("t1", "doc", 4, version="v2")
    other = make_points("t1", "other", 3, version="v1")
    ready.upsert(old + other)
    ready.upsert(new)  # new written before old deleted
    assert ready.count("t1") == 13
    ready.delete_stale_chunks("t1", "doc", keep_version="v2")
    remaining = ready.scroll("t1")
    assert {pid for pid, _ in remaining} == {p.id for p in new + other}
    assert ready.documents("t1")["doc"].version == "v2"


def test_delete_documents_only_those(ready: VectorStore) -> None:
    ready.upsert(make_points("t1", "a", 3) + make_points("t1", "b", 3) + make_points("t2", "a", 2))
    ready.delete_documents("t1", ["a"])
    assert sorted(ready.documents("t1")) == ["b"]
    assert ready.count("t1") == 3
    assert ready.count("t2") == 2  # same doc_id in another tenant survives


def test_documents_manifest_from_first_chunks(ready: VectorStore) -> None:
    ready.upsert(make_points("t1", "a", 4, version="va") + make_points("t1", "b", 2, version="vb"))
    documents = ready.documents("t1")
    assert sorted(documents) == ["a", "b"]
    assert documents["a"].version == "va"
    assert documents["a"].chunk_count == 4
    assert documents["a"].source == "a.txt"
    assert documents["b"].content_hash == "hash-vb"


def test_documents_two_versions_one_entry(ready: VectorStore) -> None:
    ready.upsert(make_points("t1", "a", 2, version="v1") + make_points("t1", "a", 2, version="v2"))
    documents = ready.documents("t1")
    assert list(documents) == ["a"]
    assert documents["a"].version in {"v1", "v2"}


@pytest.mark.parametrize(
    "read",
    [
        "dense",  # nearest neighbours of B's own vector
        "sparse",  # B's exact words
        "scroll",  # everything of the tenant
        "documents",  # the manifest
    ],
)
def test_tenant_isolation_no_leak(ready: VectorStore, read: str) -> None:
    text = ["secret project zeppelin budget"]
    a = make_points("tenant-a", "a-doc", 1, texts=["public roadmap notes"])
    b = make_points("tenant-b", "b-doc", 1, texts=text)
    ready.upsert(a + b)
    if read == "dense":
        seen = {h.doc_id for h in ready.search_dense(b[0].dense, tenant="tenant-a", k=10)}
    elif read == "sparse":
        query = encode_query("zeppelin budget", "en")
        seen = {h.doc_id for h in ready.search_sparse(query, tenant="tenant-a", k=10)}
    elif read == "scroll":
        seen = {payload.doc_id for _, payload in ready.scroll("tenant-a")}
    else:
        seen = set(ready.documents("tenant-a"))
    assert "b-doc" not in seen
    assert ready.count("tenant-a") == 1


def test_ping_ready(ready: VectorStore) -> None:
    ready.ping()
    assert ready.count() == 0


# Embedded store: several processes, crashes, lock behaviour.


def _write_and_search(directory: str, worker: int, docs: int) -> tuple[int, int]:
    """Worker process: write `docs` documents of 25 chunks, searching after each."""
    store = edge_store(Path(directory), batch_size=10)
    answered = 0
    for d in range(docs):
        points = make_points("shared", f"w{worker}-d{d}", 25)
        store.upsert(points)
        hits = store.search_dense(points[0].dense, tenant="shared", k=5)
        answered += hits[0].point_id == points[0].id
    return worker, answered


def test_edge_processes_write_and_search_concurrently(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = edge_store(directory)
    store.ensure_collection(DIM)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=3, mp_context=context) as pool:
        futures = [pool.submit(_write_and_search, str(directory), w, 4) for w in range(3)]
        searches = 0
        while not all(f.done() for f in futures):
            hits = store.search_sparse(encode_query("chunk topics", "en"), tenant="shared", k=3)
            assert isinstance(hits, list)
            searches += 1
        results = sorted(f.result() for f in futures)
    assert results == [(0, 4), (1, 4), (2, 4)]  # every worker found its own fresh chunk
    assert searches > 0
    assert store.count("shared") == 3 * 4 * 25
    assert len(store.documents("shared")) == 12


def _create_and_write(directory: str, worker: int) -> int:
    """Worker process: create the collection (racing the others) and write one document."""
    store = edge_store(Path(directory))
    store.ensure_collection(DIM)
    store.upsert(make_points("t1", f"w{worker}", 5))
    return worker


def test_edge_processes_racing_to_create_collection(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=3, mp_context=context) as pool:
        workers = sorted(pool.map(_create_and_write, [str(directory)] * 3, range(3)))
    store = edge_store(directory)
    assert workers == [0, 1, 2]
    assert store.count("t1") == 15
    assert sorted(p.name for p in directory.iterdir() if p.is_dir()) == [f"{ALIAS}_v1"]


def _long_write(directory: str) -> tuple[float, float]:
    """Worker process: write 1500 chunks in batches of 15; return its start and end times."""
    store = edge_store(Path(directory), batch_size=15)
    points = [p for d in range(15) for p in make_points("t1", f"doc{d}", 100)]
    begin = time.monotonic()
    store.upsert(points)
    return begin, time.monotonic()


def test_edge_search_answers_during_long_write(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = edge_store(directory)
    store.ensure_collection(DIM)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_long_write, str(directory))
        while store.count("t1") == 0:
            assert not future.done()
        seen_during_write = store.count("t1")
        hits = store.search_dense([1.0] * DIM, tenant="t1", k=3)
        answered_at = time.monotonic()
        write_began, write_ended = future.result()
    assert write_began < answered_at < write_ended  # CLOCK_MONOTONIC is system-wide
    assert 0 < seen_during_write < 1500
    assert len(hits) == 3
    assert store.count("t1") == 1500


def _write_forever(directory: str) -> None:
    """Worker process: write batches of 50 until killed."""
    store = edge_store(Path(directory), batch_size=50)
    for d in range(10_000):
        store.upsert(make_points("t1", f"doc{d}", 50))


def test_edge_writer_killed_mid_write_store_intact(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store = edge_store(directory, lock_timeout_s=10)
    store.ensure_collection(DIM)
    writer = multiprocessing.get_context("spawn").Process(
        target=_write_forever, args=(str(directory),)
    )
    writer.start()
    try:
        while store.count("t1") < 500:
            assert writer.is_alive()
        time.sleep(0.3)
    finally:
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
    count = store.count("t1")
    assert count >= 500
    assert count % 50 == 0  # one batch is one WAL record: all of it or none
    store.upsert(make_points("t1", "after", 3))  # the dead writer's locks were released
    assert store.count("t1") == count + 3
    assert store.search_dense([1.0] * DIM, tenant="t1", k=1)


def test_edge_lock_released_after_failed_write(tmp_path: Path) -> None:
    store = edge_store(tmp_path / "store", lock_timeout_s=2)
    store.ensure_collection(DIM)
    bad = make_points("t1", "doc", 1)[0].model_copy(update={"dense": [1.0, 2.0]})
    with pytest.raises(Exception, match="dimension"):
        store.upsert([bad])
    store.upsert(make_points("t1", "doc", 2))
    assert store.count("t1") == 2


def test_edge_lock_busy_times_out(tmp_path: Path) -> None:
    holder = edge_store(tmp_path / "store")
    waiter = edge_store(tmp_path / "store", lock_timeout_s=0.2)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with holder._lock.hold():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        with pytest.raises(StoreBusyError):
            waiter.count()
    finally:
        release.set()
        thread.join()
    assert waiter.count() == 0


def test_edge_leftover_shard_without_alias_reused(tmp_path: Path) -> None:
    store = edge_store(tmp_path / "store")
    store.ensure_collection(DIM)
    store.upsert(make_points("t1", "doc", 4))
    (tmp_path / "store" / ALIASES_FILE).unlink()  # as if the process died before the alias
    store.ensure_collection(DIM)
    assert store.count("t1") == 4


# Server store: retries of transient failures only.


def _unexpected(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status, "reason", b"{}", httpx.Headers())


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_unexpected(500), True),  # server error
        (_unexpected(503), True),  # unavailable, e.g. restarting
        (_unexpected(429), True),  # rate limited
        (_unexpected(400), False),  # bad request: retrying cannot help
        (_unexpected(404), False),  # missing collection
        (ResponseHandlingException(httpx.ConnectError("refused")), True),  # connection refused
        (ResponseHandlingException(httpx.ReadTimeout("slow")), True),  # request timed out
        (ResponseHandlingException(ValueError("bad json")), False),  # unparsable answer
        (ValueError("bug"), False),  # our own error
    ],
)
def test_is_transient_classifies(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_call_with_retry_backs_off_then_succeeds() -> None:
    calls: list[int] = []
    delays: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _unexpected(503)
        return "ok"

    assert call_with_retry(flaky, what="test", sleep=delays.append) == "ok"
    assert len(calls) == 3
    assert len(delays) == 2
    assert 0 <= delays[0] <= 0.5 and 0 <= delays[1] <= 1.0


class _FakeQdrant(BaseHTTPRequestHandler):
    """Answers upserts with the scripted statuses, then 200, over Qdrant's REST protocol."""

    script: ClassVar[list[int]] = []
    bodies: ClassVar[list[dict[str, object]]] = []

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/aliases"):  # writes look for a version being built
            self._answer(200, {"result": {"aliases": []}, "status": "ok", "time": 0.001})
            return
        self._answer(200, {"title": "qdrant", "version": "1.20.0"})

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        status = type(self).script.pop(0) if type(self).script else 200
        if status == 200:
            result = {"operation_id": 1, "status": "completed"}
            self._answer(200, {"result": result, "status": "ok", "time": 0.001})
        else:
            self._answer(status, {"status": {"error": "scripted"}, "time": 0.001})

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def fake_qdrant() -> Iterator[tuple[str, type[_FakeQdrant]]]:
    """A loopback HTTP server speaking enough of Qdrant's REST API for upserts."""
    handler = type("Handler", (_FakeQdrant,), {"script": [], "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("script", "requests", "error"),
    [
        ([503, 502], 3, None),  # two transient failures, then written
        ([503] * 5, 5, TransientStoreError),  # still failing after every attempt
        ([400], 1, UnexpectedResponse),  # a client error is raised at once
    ],
)
def test_server_upsert_retries_transient_only(
    fake_qdrant: tuple[str, type[_FakeQdrant]],
    monkeypatch: pytest.MonkeyPatch,
    script: list[int],
    requests: int,
    error: type[Exception] | None,
) -> None:
    monkeypatch.setattr("core.store.retry.BASE_DELAY_S", 0.01)
    url, handler = fake_qdrant
    handler.script.extend(script)
    client = QdrantClient(url=url, timeout=5, check_compatibility=False)
    store = ServerStore(client, ALIAS, batch_size=100)
    points = make_points("t1", "doc", 3)
    try:
        if error is None:
            store.upsert(points)
        else:
            with pytest.raises(error):
                store.upsert(points)
    finally:
        store.close()
    assert len(handler.bodies) == requests
    assert [p["id"] for p in handler.bodies[-1]["points"]] == [p.id for p in points]  # type: ignore[index]
