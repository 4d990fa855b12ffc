"""Fault-test helpers: a corpus of small documents, flow runs in a subprocess, run records."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.schemas.objects import State

from core.store import get_store
from tasks.indexing import point_id
from tests.docgen import write_text

REPO = Path(__file__).resolve().parents[2]
TOPICS = [
    "backup rotation keeps seven daily copies on the external disk",
    "the firewall allows only ssh and https and logs every rejected packet",
    "disk quotas are enabled with the usrquota option in the file system table",
    "the resolver reads its name servers from the resolver configuration file",
    "log files are compressed weekly and removed after one year",
]


def write_corpus(folder: Path, count: int) -> Path:
    """`count` small Markdown documents of one or two chunks each, all different."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        topic = TOPICS[number % len(TOPICS)]
        body = " ".join(f"Note {number}.{line}: {topic}." for line in range(6))
        write_text(folder / f"doc-{number:03d}.md", f"# Document {number}\n\n{body}\n")
    return folder


def assert_exact_points(tenant: str, documents: int) -> int:
    """Every document whole exactly once (count == chunk_count, deterministic ids); the total."""
    points = get_store().scroll(tenant)
    by_doc: dict[str, list[tuple[str, int, int, str]]] = {}
    for pid, payload in points:
        by_doc.setdefault(payload.doc_id, []).append(
            (pid, payload.chunk_index, payload.chunk_count, payload.version)
        )
    assert len(by_doc) == documents, f"{len(by_doc)} documents stored, {documents} expected"
    for doc_id, rows in by_doc.items():
        versions = {version for *_, version in rows}
        assert len(versions) == 1, f"{doc_id}: several versions {versions}"
        (version,) = versions
        count = rows[0][2]
        assert sorted(index for _, index, _, _ in rows) == list(range(count)), doc_id
        assert {pid for pid, *_ in rows} == {
            point_id(tenant, doc_id, version, index) for index in range(count)
        }
    assert len({pid for pid, _ in points}) == len(points)
    return len(points)


def flow_env(**extra: str) -> dict[str, str]:
    """The environment of a flow-run subprocess: this session's Prefect server and settings."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    env.update(extra)
    return env


def start_flow_process(
    paths: list[str], tenant: str, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Runs the ingestion flow in its own process (its own session, so it can be killed whole)."""
    script = (
        "import sys\n"
        "from flows.ingest import ingest_documents\n"
        "ingest_documents(paths=sys.argv[2:], tenant=sys.argv[1])\n"
    )
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-c", script, tenant, *paths],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.2
) -> None:
    """Polls `condition` until it holds; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


def flow_run_id(state: State[Any]) -> UUID:
    """The flow-run id of a flow's final state."""
    assert state.state_details.flow_run_id is not None
    return state.state_details.flow_run_id


def task_run_states(
    flow_run_id: UUID, settle_s: float = 3.0, timeout_s: float = 60
) -> dict[str, Counter[str]]:
    """Per task name, how many of the flow run's task runs ended in each state name.

    Task-run states reach the server as events, a little after the flow returns: poll until
    every task run is final and the numbers stop changing.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    seen: dict[str, Counter[str]] = {}
    stable_since = time.monotonic()
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as prefect:
        while time.monotonic() < deadline:
            runs = prefect.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
            )
            current: dict[str, Counter[str]] = {}
            final = True
            for run in runs:
                # "parse doc.md", "index doc.md", "embed-batch-3": the kind of step.
                name = run.name.split(" ", 1)[0] if " " in run.name else run.name.rsplit("-", 1)[0]
                state = (run.state.name if run.state else None) or "NONE"
                final = final and bool(run.state and run.state.is_final())
                current.setdefault(name, Counter())[state] += 1
                if run.run_count > 1:
                    current[name]["run_count>1"] += 1
            if current != seen or not final:
                seen = current
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= settle_s:
                return seen
            time.sleep(0.5)
    return seen


@pytest.fixture
def corpus_env(stack_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The flow stack with small embedding batches, so a run has many steps to interrupt."""
    from core.settings import get_settings

    monkeypatch.setenv("OCTAVIUS_EMBED_BATCH_SIZE", "8")
    get_settings.cache_clear()
    return stack_env
