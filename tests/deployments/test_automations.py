"""Automations against Prefect's harness: applied idempotently, and a killed run ends CRASHED."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.settings import PREFECT_API_URL

from core.settings import Settings
from deployments.automations import BACKLOG, FAILURES, HEARTBEAT_S, ZOMBIE, apply_automations

NAMES = [ZOMBIE, BACKLOG, FAILURES]

SLEEPER = """
import sys, time
from pathlib import Path
from prefect import flow, runtime

@flow(name="octavius-zombie-test")
def sleeper(path: str) -> None:
    Path(path).write_text(runtime.flow_run.id)
    time.sleep(600)

sleeper(sys.argv[1])
"""


async def _automations() -> dict[str, object]:
    async with get_client() as client:
        found = {}
        for name in NAMES:
            for automation in await client.read_automations_by_name(name):
                found.setdefault(name, []).append(automation)  # type: ignore[attr-defined]
        return found


@pytest.fixture
def applied(prefect_harness: None) -> Iterator[Settings]:
    """The automations applied with a short crash window, deleted afterwards (they watch every
    run of the session's server)."""
    settings = Settings(crash_after_s=45, alert_failures=3)
    apply_automations(settings)
    yield settings

    async def delete() -> None:
        async with get_client() as client:
            for name in NAMES:
                for automation in await client.read_automations_by_name(name):
                    await client.delete_automation(automation.id)

    asyncio.run(delete())


def test_apply_automations_is_idempotent(applied: Settings) -> None:
    apply_automations(applied.model_copy(update={"alert_failures": 7}))
    found = asyncio.run(_automations())
    assert {name: len(items) for name, items in found.items()} == {n: 1 for n in NAMES}  # type: ignore[arg-type]
    [failures] = found[FAILURES]  # type: ignore[misc]
    assert failures.trigger.threshold == 7
    [zombie] = found[ZOMBIE]  # type: ignore[misc]
    assert zombie.trigger.within.total_seconds() == 45
    assert zombie.actions[0].state.value == "CRASHED"
    [backlog] = found[BACKLOG]  # type: ignore[misc]
    assert backlog.trigger.threshold == 1000


async def _run(run_id: UUID) -> tuple[str | None, int]:
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        beats = await client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
            ),
            limit=5,
        )
        return (run.state.type.value if run.state else None), len(beats.events)


def test_sigkilled_flow_run_marked_crashed(applied: Settings, tmp_path: Path) -> None:
    id_file = tmp_path / "run-id"
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SLEEPER, str(id_file)], env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        state, beats = None, 0
        while time.monotonic() < deadline:
            if id_file.exists() and id_file.read_text():
                state, beats = asyncio.run(_run(UUID(id_file.read_text())))
                if state == "RUNNING" and beats:
                    break
            assert process.poll() is None, "the flow process exited on its own"
            time.sleep(0.5)
        assert (state, beats > 0) == ("RUNNING", True)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    run_id = UUID(id_file.read_text())
    # nobody reports the death: only the missing heartbeats tell
    deadline = time.monotonic() + applied.crash_after_s + 120
    while time.monotonic() < deadline:
        state, _ = asyncio.run(_run(run_id))
        if state != "RUNNING":
            break
        time.sleep(2)
    assert state == "CRASHED"
