"""A Dask worker process lost mid-run (SIGKILL, no nanny to restart it): the flow completes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import get_settings
from flows.ingest import ingest_documents
from tests.faults.conftest import assert_exact_points, flow_env, wait_until, write_corpus

DOCUMENTS = 40
TENANT = "lost"


@pytest.fixture
def own_cluster(
    prefect_harness: None, octavius_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A scheduler with two `dask worker --no-nanny` processes of this test alone.

    Without a nanny a killed worker is gone for good, like a lost machine.
    """
    from distributed import Client, LocalCluster

    monkeypatch.setenv("OCTAVIUS_EMBED_BATCH_SIZE", "8")
    get_settings.cache_clear()
    workers: list[subprocess.Popen[bytes]] = []
    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=0, processes=True, dashboard_address=None
    ) as cluster:
        address = str(cluster.scheduler_address)
        try:
            for _ in range(2):
                workers.append(
                    subprocess.Popen(
                        [str(Path(sys.executable).parent / "dask"), "worker", address,
                         "--no-nanny", "--nthreads", "1", "--no-dashboard"],
                        env=flow_env(),
                        start_new_session=True,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
            with Client(address, timeout=60) as client:  # type: ignore[no-untyped-call]
                client.wait_for_workers(2, timeout=240)
            monkeypatch.setenv("OCTAVIUS_DASK_ADDRESS", address)
            get_settings.cache_clear()
            yield address
        finally:
            for worker in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def _worker_pids(address: str) -> dict[str, int]:
    """Per worker address, the pid of its process."""
    from distributed import Client

    with Client(address, timeout=30) as client:  # type: ignore[no-untyped-call]
        return client.run(os.getpid)  # type: ignore[no-any-return]


def _embedding(address: str) -> list[str]:
    """Workers that have an embedding task assigned right now."""
    from distributed import Client

    with Client(address, timeout=30) as client:  # type: ignore[no-untyped-call]
        processing = client.processing()
    return [w for w, keys in processing.items() if any("embed" in str(k) for k in keys)]


def test_dask_worker_killed_mid_embedding_flow_completes(own_cluster: str, tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "corpus", DOCUMENTS)
    pids = _worker_pids(own_cluster)
    assert len(pids) == 2
    killed: list[str] = []

    def kill_one_worker() -> None:
        # Wait until some embedding is running on a worker, then take that machine away whole.
        busy: list[str] = []

        def embedding_started() -> bool:
            busy[:] = _embedding(own_cluster)
            return bool(busy)

        wait_until(embedding_started, 900, "embedding")
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append(busy[0])

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    report = ingest_documents(paths=[str(folder)], tenant=TENANT)
    killer.join(timeout=30)
    assert killed, "no worker was killed"
    assert list(_worker_pids(own_cluster)) == [w for w in pids if w != killed[0]]
    assert (report.indexed, report.failed) == (DOCUMENTS, 0)
    assert assert_exact_points(TENANT, DOCUMENTS) == report.chunks_embedded
