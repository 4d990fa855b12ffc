"""The API process's garbage collection, kept out of the way of requests.

CPython collects its young generation every 700 new container objects. A burst of 100 uploads
makes 12,000 to 19,000 of them, so it stopped 17 to 27 times for collections, 10 to 45 ms of
the burst in all, while every request in it waited on the one event loop. Here the process
collects at moments when no request waits for its answer; CPython's own young collections run
only past YOUNG_BACKSTOP new objects (a long stretch with never a moment free).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Final

logger = logging.getLogger(__name__)

#: CPython's own young collections run only past this many new container objects.
YOUNG_BACKSTOP: Final = 50_000
#: How often the loop looks for a moment without requests.
IDLE_CHECK_S: Final = 0.25
#: Fewer new objects than this (CPython's default threshold) are not worth a collection.
MIN_YOUNG: Final = 700


async def freeze_heap_after(warm_up: Awaitable[object]) -> None:
    """Once the embedder is loaded, leaves everything allocated so far out of garbage collection.

    The process then holds about half a million long-lived objects (torch, transformers, Prefect's
    models); a full collection walks them all, about 235 ms with the event loop stopped, in the
    middle of whatever requests are in flight. Frozen, they are never walked again.
    """
    try:
        await warm_up
    except Exception as exc:  # /api/search loads it on first use instead
        logger.warning("warming the embedder failed: %r", exc)
    gc.collect()
    gc.freeze()


def due_generation() -> int:
    """The oldest generation CPython would collect now: each one is collected once the one below
    it has been collected more times than its threshold (the count gc.get_count() shows)."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    for generation in (2, 1):
        if counts[generation] > thresholds[generation]:
            return generation
    return 0


def collect_if_due(busy: Callable[[], bool]) -> int | None:
    """Collects the due generation unless a request waits or too few objects are new; returns
    the generation collected, or None."""
    if busy() or gc.get_count()[0] < MIN_YOUNG:
        return None
    generation = due_generation()
    gc.collect(generation)
    return generation


# Collectors running in this process, and the thresholds found when the first one started.
_running = 0
_found = gc.get_threshold()


async def collect_between_requests(
    busy: Callable[[], bool], period_s: float = IDLE_CHECK_S
) -> None:
    """Until cancelled: CPython's young collections only past YOUNG_BACKSTOP, and the collections
    it would have run done here instead, every `period_s`, whenever `busy()` is false. The
    thresholds go back to what they were once the last collector of the process stops."""
    global _running, _found
    if _running == 0:
        _found = gc.get_threshold()
        gc.set_threshold(YOUNG_BACKSTOP, *_found[1:])
    _running += 1
    try:
        while True:
            await asyncio.sleep(period_s)
            collect_if_due(busy)
    finally:
        _running -= 1
        if _running == 0:
            gc.set_threshold(*_found)
