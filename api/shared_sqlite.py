"""SQLite files that the API processes of one machine share: WAL mode, short write transactions.

Transactions take microseconds, so callers run them on the event loop: a thread hop would cost
more than the work, and the busy timeout only matters under pathological load. A checkpoint
(copying the log into the database and syncing both to disk) takes milliseconds to tens of
them, so commits leave it to `checkpoint_forever`, which runs it in a thread beside the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

# Commits checkpoint only past this many log pages (160 MiB): a bound on the log should
# checkpoint_forever not run, never reached while it does.
_AUTOCHECKPOINT_PAGES: Final = 40_000


def open_shared(path: Path, schema: str, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to the database at `path` (created on first use, with `schema`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # Durable when a process dies; a power loss can lose the last transactions.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
    db.executescript(schema)
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction that other processes wait for instead of interleaving."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def checkpoint(path: Path) -> None:
    """Copies the log of the database at `path` into it, without waiting for anybody."""
    if not path.exists():
        return
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")


async def checkpoint_forever(paths: Sequence[Path], every_s: float) -> None:
    """Checkpoints the databases every `every_s` seconds, in a worker thread, until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        for path in paths:
            try:
                await asyncio.to_thread(checkpoint, path)
            except sqlite3.Error as exc:
                logger.warning("checkpointing %s failed: %r", path, exc)
