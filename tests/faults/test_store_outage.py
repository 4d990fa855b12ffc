"""The vector store unavailable for a while during ingestion: writes retry and the run is exact.

Embedded store: another process holds the store's cross-process lock for several seconds in
the middle of a run, longer than OCTAVIUS_STORE_LOCK_TIMEOUT_S, so writes fail as busy and the
index task retries with backoff. Server store: qdrant-client talks to a loopback TCP proxy that
is stopped (connections refused) and started again; there is no Qdrant server binary here, so
the proxy fronts the loopback stand-in that speaks Qdrant's REST protocol for upserts.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from core.settings import get_settings
from core.store.server import ServerStore
from flows.ingest import ingest_documents
from tests.core.test_store import ALIAS, fake_qdrant, make_points  # noqa: F401  (fixture)
from tests.faults.conftest import (
    REPO,
    assert_exact_points,
    task_run_states,
    wait_until,
    write_corpus,
)
from tests.faults.conftest import (
    flow_run_id as _flow_run_id,
)

DOCUMENTS = 40
TENANT = "outage"
HOLD_S = 6.0

_HOLDER = """
import sys, time
from pathlib import Path
from core.store.lock import StoreLock
sys.stdin.readline()
with StoreLock(Path(sys.argv[1]), timeout_s=60).hold():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_store_locked_by_another_process_mid_run(
    corpus_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCTAVIUS_STORE_LOCK_TIMEOUT_S", "1.5")
    get_settings.cache_clear()
    folder = write_corpus(tmp_path / "corpus", DOCUMENTS)
    store_dir = get_settings().store_dir
    # Started ahead (imports take a while), it takes the lock the moment it reads a line.
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store_dir), str(HOLD_S)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None

    signalled = threading.Event()

    def lock_mid_run() -> None:
        wait_until(lambda: _count(store_dir) >= 3, timeout_s=900, what="first writes", poll_s=0.05)
        holder.stdin.write("go\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        signalled.set()

    watcher = threading.Thread(target=lock_mid_run, daemon=True)
    watcher.start()
    try:
        state = ingest_documents(paths=[str(folder)], tenant=TENANT, return_state=True)
        watcher.join(timeout=30)
        assert signalled.is_set(), "the lock holder was never told to take the lock"
        assert holder.stdout.readline().strip() == "held"
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    report = state.result()
    assert (report.indexed, report.failed) == (DOCUMENTS, 0)
    assert assert_exact_points(TENANT, DOCUMENTS) == report.chunks_embedded
    states = task_run_states(_flow_run_id(state))
    index = states.get("index", Counter())
    # Some index task met the held lock and was retried (run_count > 1), and every one completed.
    assert index.get("run_count>1", 0) >= 1, states
    assert index.get("Completed", 0) >= 1, states
    assert set(index) <= {"Completed", "run_count>1"}, states


def _count(store_dir: Path) -> int:
    """Points in the store, read with a generous lock timeout of its own."""
    from core.store.edge import EdgeStore

    settings = get_settings().model_copy(update={"store_lock_timeout_s": 120.0})
    assert settings.store_dir == store_dir
    return EdgeStore.from_settings(settings).count(TENANT)


class _Proxy:
    """A loopback TCP proxy that can be stopped (connections refused) and started again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._server: socket.socket | None = None
        self.connections = 0

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(fake_qdrant: tuple[str, type]) -> Iterator[tuple[_Proxy, type]]:  # noqa: F811
    """A stoppable proxy in front of the Qdrant REST stand-in."""
    url, handler = fake_qdrant
    host, port = url.removeprefix("http://").split(":")
    front = _Proxy((host, int(port)))
    front.start()
    yield front, handler
    front.stop()


def test_server_store_upsert_survives_a_refused_connection_outage(
    proxy: tuple[_Proxy, type], caplog: pytest.LogCaptureFixture
) -> None:
    front, handler = proxy
    client = QdrantClient(
        url=f"http://127.0.0.1:{front.port}", timeout=5, check_compatibility=False
    )
    store = ServerStore(client, ALIAS, batch_size=100)
    points = make_points("t1", "doc", 3)
    front.stop()  # the server goes away: every connection is refused
    restart = threading.Timer(0.5, front.start)
    restart.start()
    with caplog.at_level(logging.WARNING, logger="core.store.retry"):
        try:
            store.upsert(points)
        finally:
            restart.join()
            store.close()
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert retries, "the first attempt cannot have succeeded while the proxy was down"
    assert front.connections >= 1
    body = handler.bodies[-1]  # type: ignore[attr-defined]
    assert [p["id"] for p in body["points"]] == [p.id for p in points]
