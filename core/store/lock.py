"""The embedded store's cross-process lock, fair enough that readers get between writer batches.

A plain polled file lock lets a writer that releases and re-acquires at once starve every
waiter. A turnstile fixes that: every holder first passes a gate lock, takes the store lock
while still inside the gate, then leaves the gate. A waiter parks inside the gate, so the
writer's next batch queues behind it and the waiter is served as soon as the batch ends.
Both are OS file locks (flock), released by the kernel if a holder dies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from core.store.base import StoreBusyError

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.005
LOCK_FILE = ".store.lock"
GATE_FILE = ".store.gate"


class StoreLock:
    """Exclusive, cross-process and cross-thread hold on an embedded store directory."""

    def __init__(self, directory: Path, timeout_s: float) -> None:
        """Lock the store in `directory`, waiting at most `timeout_s` per acquisition."""
        self.directory = directory
        self.timeout_s = timeout_s

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the store lock for the body; raise `StoreBusyError` after the timeout."""
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout_s
        # Fresh lock objects per hold: each gets its own descriptor, so threads exclude each
        # other like processes do, and no state leaks across fork.
        gate = FileLock(self.directory / GATE_FILE, poll_interval=POLL_INTERVAL_S)
        store = FileLock(self.directory / LOCK_FILE, poll_interval=POLL_INTERVAL_S)
        started = time.monotonic()
        try:
            with gate.acquire(timeout=self.timeout_s):
                store.acquire(timeout=max(0.0, deadline - time.monotonic()))
        except Timeout as exc:
            raise StoreBusyError(
                f"vector store {self.directory} stayed locked for {self.timeout_s:.0f} s"
            ) from exc
        waited = time.monotonic() - started
        if waited > 1.0:
            logger.info("waited %.2f s for the vector store lock", waited)
        try:
            yield
        finally:
            store.release()
