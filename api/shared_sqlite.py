"""SQLite files that the API processes of one machine share: WAL mode, short write transactions.

Transactions take microseconds, so callers run them on the event loop: a thread hop would cost
more than the work, and the busy timeout only matters under pathological load.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_shared(path: Path, schema: str, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to the database at `path` (created on first use, with `schema`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # Durable when a process dies; a power loss can lose the last transactions.
    db.execute("PRAGMA synchronous=NORMAL")
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
