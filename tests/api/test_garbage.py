"""The API's garbage collection between requests, on the real collector of this interpreter."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from api.garbage import (
    MIN_YOUNG,
    YOUNG_BACKSTOP,
    collect_between_requests,
    collect_if_due,
    due_generation,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def manual_gc() -> Iterator[None]:
    """No automatic collections during the test, so the counts move only as it says."""
    enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _new_objects(count: int) -> list[list[int]]:
    """`count` new container objects the collector tracks (kept alive by the caller)."""
    return [[] for _ in range(count)]


async def test_garbage_collect_if_due_waits_for_a_free_moment(manual_gc: None) -> None:
    kept = _new_objects(2 * MIN_YOUNG)
    assert collect_if_due(lambda: True) is None
    assert gc.get_count()[0] >= 2 * MIN_YOUNG  # nothing collected while a request waits
    assert collect_if_due(lambda: False) == 0
    assert gc.get_count()[0] < MIN_YOUNG
    assert len(kept) == 2 * MIN_YOUNG


async def test_garbage_collect_if_due_skips_a_young_generation_too_small(manual_gc: None) -> None:
    count = gc.get_count()
    assert count[0] < MIN_YOUNG
    assert collect_if_due(lambda: False) is None
    assert gc.get_count()[1:] == count[1:]  # no collection counted


async def test_garbage_due_generation_follows_cpythons_counts(manual_gc: None) -> None:
    thresholds = gc.get_threshold()
    assert due_generation() == 0
    for _ in range(thresholds[1] + 1):  # each young collection counts once for generation 1
        gc.collect(0)
    assert due_generation() == 1
    for _ in range(thresholds[2] + 1):  # each generation-1 collection counts for generation 2
        gc.collect(1)
    assert due_generation() == 2
    gc.collect(2)
    assert due_generation() == 0


async def test_garbage_collect_between_requests_collects_only_while_idle() -> None:
    before = gc.get_threshold()
    busy = True
    collector = asyncio.create_task(collect_between_requests(lambda: busy, period_s=0.01))
    try:
        await asyncio.sleep(0.05)
        assert gc.get_threshold() == (YOUNG_BACKSTOP, *before[1:])
        kept = _new_objects(3 * MIN_YOUNG)
        await asyncio.sleep(0.1)
        assert gc.get_count()[0] >= 3 * MIN_YOUNG  # busy: left for later
        busy = False
        await asyncio.sleep(0.1)
        assert gc.get_count()[0] < MIN_YOUNG
        assert len(kept) == 3 * MIN_YOUNG
    finally:
        collector.cancel()
        with pytest.raises(asyncio.CancelledError):
            await collector
    assert gc.get_threshold() == before


async def test_garbage_collectors_of_several_apps_restore_the_thresholds_last() -> None:
    # Two apps' lifespans in one process (as in tests), stopped in the order they started.
    before = gc.get_threshold()
    first = asyncio.create_task(collect_between_requests(lambda: True, period_s=0.01))
    second = asyncio.create_task(collect_between_requests(lambda: True, period_s=0.01))
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert gc.get_threshold() == (YOUNG_BACKSTOP, *before[1:])  # the second still runs
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert gc.get_threshold() == before
