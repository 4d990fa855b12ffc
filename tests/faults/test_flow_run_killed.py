"""A flow-run process killed with SIGKILL mid-ingestion: a re-run ends with the exact points."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

from core.store import get_store
from flows.ingest import ingest_documents
from tests.faults.conftest import (
    assert_exact_points,
    flow_env,
    start_flow_process,
    task_run_states,
    wait_until,
    write_corpus,
)
from tests.faults.conftest import (
    flow_run_id as _flow_run_id,
)

DOCUMENTS = 100
TENANT = "killed"


def test_sigkill_mid_ingestion_then_rerun_is_exact(corpus_env: Path, tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "corpus", DOCUMENTS)
    log = tmp_path / "flow.log"
    store = get_store()
    process = start_flow_process([str(folder)], TENANT, flow_env(), log)
    try:
        # Mid-run: some documents written, the run still going.
        wait_until(
            lambda: process.poll() is not None or store.count(TENANT) >= 8,
            timeout_s=600,
            what="the first documents to be indexed",
        )
        assert process.poll() is None, (
            "the run ended before it could be killed:\n" + log.read_text()[-3000:]
        )
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    partial = store.documents(TENANT)
    assert 0 < len(partial) < DOCUMENTS, f"{len(partial)} documents after the kill"

    state = ingest_documents(paths=[str(folder)], tenant=TENANT, return_state=True)
    report = state.result()
    # Documents written whole before the kill are skipped; the rest (including any written in
    # part) are indexed again, over the same point ids.
    assert report.failed == 0
    assert report.indexed + report.unchanged == DOCUMENTS
    assert report.unchanged >= len(partial) - 1  # the one being written may be incomplete
    total = assert_exact_points(TENANT, DOCUMENTS)
    assert report.chunks_embedded < total  # finished work was not embedded again

    # Parsing had finished for every document before the kill: the re-run reads it from cache.
    states = task_run_states(_flow_run_id(state))
    parse = states.get("parse", Counter())
    assert parse.get("Cached", 0) == report.indexed, states
    assert sum(n for name, n in parse.items() if name != "Cached") == 0, states
    print(
        f"\nafter SIGKILL: {len(partial)}/{DOCUMENTS} documents stored; re-run: {report.indexed}"
        f" indexed, {report.unchanged} unchanged, {report.chunks_embedded}/{total} chunks embedded;"
        f" task runs {dict((k, dict(v)) for k, v in states.items())}"
    )
