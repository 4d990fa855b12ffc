"""SQLite files that the API processes of one machine share: WAL mode, short write transactions.

Transactions take microseconds, so callers run them on the event loop: a thread hop would cost
more than the work. A checkpoint (copying the log into the database and syncing both to disk)
takes milliseconds to tens of them, so commits leave it to `checkpoint_forever`, which runs it
in a thread beside the requests.

A writer that finds another process's transaction under way polls every _POLL_S for the lock
instead of using SQLite's busy handler, whose first sleep is a whole millisecond: with two API
processes taking turns at microsecond transactions, that millisecond (with the event loop
stopped) came up on most requests of a burst.

Requests on one event loop commit together (GroupCommit): the transactions that a burst of
requests asks for in one turn of the loop run as savepoints of one transaction, so a burst pays
for one BEGIN and one COMMIT (the log writes, most of a small transaction's time) instead of one
per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

logger = logging.getLogger(__name__)

# Commits checkpoint only past this many log pages (160 MiB): a bound on the log should
# checkpoint_forever not run, never reached while it does.
_AUTOCHECKPOINT_PAGES: Final = 40_000
# How long a writer waits for another process's transaction, and how often it looks.
WRITE_WAIT_S: Final = 5.0
_POLL_S: Final = 50e-6


def open_shared(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to the database at `path` (created on first use, with `schema`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=WRITE_WAIT_S, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # Durable when a process dies; a power loss can lose the last transactions.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
    db.executescript(schema)
    # From here on a busy database is write_transaction's to wait for (reads never wait in WAL).
    db.execute("PRAGMA busy_timeout=0")
    return db


def _begin(db: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, polling while another connection holds the write lock."""
    deadline: float | None = None
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # extended codes too
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + WRITE_WAIT_S
            elif now > deadline:
                raise
        time.sleep(_POLL_S)


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction that other processes wait for instead of interleaving."""
    _begin(db)
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


T = TypeVar("T")
# One caller's part of a write transaction: it reads and writes through the connection.
Work = Callable[[sqlite3.Connection], T]


class GroupCommit:
    """Runs write work that callers on one event loop ask for in the same turn of the loop as
    one transaction, each caller's work in its own savepoint.

    A caller's work is all or nothing, as in a transaction of its own: when it raises, its
    savepoint is rolled back and the caller gets the exception, and the others' work goes on.
    Results are handed out only once the transaction is committed; when BEGIN or COMMIT fails,
    nothing is written and every caller gets that error. Work whose caller was cancelled before
    its turn is skipped.
    """

    def __init__(
        self, transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]
    ) -> None:
        """`transaction` opens the write transaction a group runs in."""
        self._transaction = transaction
        self._waiting: list[tuple[Work[Any], asyncio.Future[Any]]] = []

    async def run(self, work: Work[T]) -> T:
        """Runs `work` in the next group's transaction; returns what it returns once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._waiting.append((work, future))
        if len(self._waiting) == 1:
            # After the callbacks already due in this turn: requests whose data came in together
            # reach this point first and join the group.
            loop.call_soon(self._commit)
        return await future

    def _commit(self) -> None:
        group = [(work, future) for work, future in self._waiting if not future.cancelled()]
        self._waiting = []
        if not group:
            return
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            with self._transaction() as db:
                for work, future in group:
                    db.execute("SAVEPOINT work")
                    try:
                        result = work(db)
                    except Exception as exc:
                        db.execute("ROLLBACK TO work")
                        db.execute("RELEASE work")
                        done.append((future, None, exc))
                    else:
                        db.execute("RELEASE work")
                        done.append((future, result, None))
        except Exception as exc:  # BEGIN, a savepoint or COMMIT failed: nothing was written
            done = [(future, None, exc) for _, future in group]
        for future, result, error in done:
            if future.cancelled():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


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
