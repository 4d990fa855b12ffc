"""Per-user limits in a SQLite file that every API process on the machine shares.

Rate: a token bucket per user (burst tokens, refilled at the rate per minute), taken in one
`BEGIN IMMEDIATE` transaction, so concurrent processes never spend the same token.

Tasks in flight: one row per task the API started, plus one per request that is creating a task
right now. A request inserts its row and counts the user's rows in one transaction, and the row
stays until it is bound to its Prefect run, so the table never counts fewer tasks than exist.
Bindings are written with the process's next transaction (or _BIND_AFTER_S later): a request
that starts a task takes its rate token and its row in one transaction, which it shares with
the other requests of its turn of the event loop (GroupCommit: a burst commits once). Rows of
tasks that finished are noticed when a user reaches the cap: then the table is reconciled with
the runs Prefect has in flight, and the request counts again. The same reconciliation picks up
runs the API did not start (the CLI, a retry, another machine); it runs before a user's first
task, and then in the background, without delaying the request, when a user's rows were not
reconciled for _SYNC_EVERY_S (once requests for tasks pause, so that Prefect's answer is not
parsed in the middle of a burst). A request that dies mid-way leaves a row that expires after a
lease.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Final, Literal

import httpx
from fastapi import HTTPException, status
from prefect.client.orchestration import PrefectClient

from api.limits import PendingRuns, rate_refused, tasks_refused
from api.limits_prefect import in_flight_run_ids
from api.shared_sqlite import GroupCommit, open_shared, write_transaction
from core.settings import Settings

logger = logging.getLogger(__name__)

# A request that holds a row for longer than this died before it created its task.
_PENDING_LEASE_S: Final = 300.0
# Runs started elsewhere (the CLI, a retry, another machine) are counted at least this often.
_SYNC_EVERY_S: Final = 30.0
# A periodic reconciliation waits for a lull this long between requests (at most _LULL_MAX_S):
# parsing Prefect's answer on the event loop in the middle of a burst delays every request.
_LULL_S: Final = 0.05
_LULL_MAX_S: Final = 5.0
# A binding waits at most this long for the next transaction to carry it (longer after errors).
_BIND_AFTER_S: Final = 0.05
_BIND_RETRY_S: Final = 1.0

# Whether a request reconciles its user's rows with Prefect, and how (see LocalLimiter.reserve).
Sync = Literal["first", "due"] | None

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate (
    user TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    run_id TEXT UNIQUE,
    reserved REAL NOT NULL,
    bound REAL
);
CREATE INDEX IF NOT EXISTS tasks_by_user ON tasks (user);
CREATE TABLE IF NOT EXISTS synced (
    user TEXT PRIMARY KEY,
    at REAL NOT NULL
);
"""


class LocalReservation:
    """A row in the tasks table, bound to its run once the run exists."""

    def __init__(self, limiter: LocalLimiter, row_id: str) -> None:
        self._limiter = limiter
        self.row_id = row_id
        self.bound = False

    def bind(self, task_id: str) -> None:
        """Records the run that now occupies the slot."""
        self._limiter.bind(self.row_id, task_id)
        self.bound = True


class LocalLimiter:
    """Rate and tasks in flight per user, in a SQLite file (WAL) under OCTAVIUS_HOME."""

    def __init__(
        self, path: Path, client: PrefectClient, pending: PendingRuns | None = None
    ) -> None:
        """A limiter on the database at `path`, created on first use; `pending` names runs of
        a user's tasks Prefect cannot count yet (claims not pushed), kept at reconciliation."""
        self._client = client
        self._pending = pending
        self._db = open_shared(path, _SCHEMA)
        self._background: set[asyncio.Task[bool]] = set()
        self._last_slot = 0.0
        # (row id, run id, when) of slots bound since the last transaction, and its timer.
        self._unbound: list[tuple[str, str, float]] = []
        self._bind_timer: asyncio.TimerHandle | None = None
        # Requests of one turn of the event loop take their rate and rows in one transaction.
        self._group = GroupCommit(self._write)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that first records the bindings waiting for one."""
        binds, self._unbound = self._unbound, []
        try:
            with write_transaction(self._db) as db:
                self._record_bindings(db, binds)
                yield db
        except BaseException:
            self._unbound[:0] = binds  # not recorded: the next transaction carries them
            raise

    @staticmethod
    def _take_token(db: sqlite3.Connection, user: str, settings: Settings, now: float) -> float:
        per_second = settings.rate_limit_per_minute / 60
        burst = float(settings.rate_limit_burst)
        row = db.execute("SELECT tokens, updated FROM rate WHERE user = ?", (user,)).fetchone()
        tokens = burst if row is None else min(burst, row[0] + (now - row[1]) * per_second)
        if tokens < 1:
            return (1 - tokens) / per_second
        db.execute(
            "INSERT INTO rate (user, tokens, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (user) DO UPDATE SET tokens = excluded.tokens, "
            "updated = excluded.updated",
            (user, tokens - 1, now),
        )
        return 0.0

    async def check_rate(self, user: str, settings: Settings) -> None:
        """Takes one request from the user's rate; 429 with Retry-After when it is used up."""
        await self._group.run(lambda db: self._rate(db, user, settings, time.time()))

    def _rate(self, db: sqlite3.Connection, user: str, settings: Settings, now: float) -> None:
        wait_s = self._take_token(db, user, settings, now)
        if wait_s > 0:
            raise rate_refused(settings, math.ceil(wait_s))

    async def reserve(
        self, user: str, settings: Settings, *, rate: bool = False
    ) -> tuple[str | None, Sync]:
        """Inserts a pending row for the user when their rows leave room.

        Returns the row id (None at the cap) and whether this request should reconcile the
        user's rows with Prefect (it then claims that job): "first" for a user never
        reconciled, "due" when nobody did for _SYNC_EVERY_S, else None. With `rate`, one
        token of the user's rate is taken in the same transaction first (429 without one).
        The transaction is shared with the other requests of this turn of the event loop.
        """

        def work(db: sqlite3.Connection) -> tuple[str | None, Sync]:
            now = time.time()
            if rate:
                self._rate(db, user, settings, now)
            return self._reserve(db, user, settings, now)

        return await self._group.run(work)

    def _reserve(
        self, db: sqlite3.Connection, user: str, settings: Settings, now: float
    ) -> tuple[str | None, Sync]:
        db.execute(
            "DELETE FROM tasks WHERE user = ? AND run_id IS NULL AND reserved < ?",
            (user, now - _PENDING_LEASE_S),
        )
        synced = db.execute("SELECT at FROM synced WHERE user = ?", (user,)).fetchone()
        sync: Sync = (
            "first" if synced is None else "due" if synced[0] < now - _SYNC_EVERY_S else None
        )
        if sync is not None:
            db.execute(
                "INSERT INTO synced (user, at) VALUES (?, ?) "
                "ON CONFLICT (user) DO UPDATE SET at = excluded.at",
                (user, now),
            )
        if self._held(db, user) >= settings.max_tasks_in_flight:
            return None, sync
        row_id = uuid.uuid4().hex
        db.execute("INSERT INTO tasks (id, user, reserved) VALUES (?, ?, ?)", (row_id, user, now))
        return row_id, sync

    @staticmethod
    def _held(db: sqlite3.Connection, user: str) -> int:
        (held,) = db.execute("SELECT count(*) FROM tasks WHERE user = ?", (user,)).fetchone()
        return int(held)

    def fits(self, row_id: str, user: str, settings: Settings) -> bool:
        """Whether the user's rows, this pending one included, are within the cap."""
        with self._write() as db:
            if self._held(db, user) <= settings.max_tasks_in_flight:
                return True
            db.execute("DELETE FROM tasks WHERE id = ?", (row_id,))
        return False

    def reconcile(self, user: str, in_flight: set[str], asked_at: float) -> None:
        """Makes the user's bound rows the runs Prefect had in flight when it was asked."""
        with self._write() as db:
            rows = db.execute(
                "SELECT id, run_id FROM tasks WHERE user = ? AND run_id IS NOT NULL AND bound < ?",
                (user, asked_at),
            ).fetchall()
            db.executemany(
                "DELETE FROM tasks WHERE id = ?",
                [(row_id,) for row_id, run_id in rows if run_id not in in_flight],
            )
            # Runs started elsewhere (the CLI, another machine's API, a retry) count too.
            db.executemany(
                "INSERT OR IGNORE INTO tasks (id, user, run_id, reserved, bound) "
                "VALUES (?, ?, ?, ?, ?)",
                [(uuid.uuid4().hex, user, run_id, asked_at, asked_at) for run_id in in_flight],
            )

    def bind(self, row_id: str, run_id: str) -> None:
        """Ties a pending row to its run, with the next transaction: until then the row counts
        as pending, and a row whose process died expires after _PENDING_LEASE_S."""
        self._unbound.append((row_id, run_id, time.time()))
        if self._bind_timer is None:
            self._schedule_bindings(_BIND_AFTER_S)

    def _schedule_bindings(self, delay_s: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop to wait on: record them now
            self._write_bindings(retry=False)
        else:
            self._bind_timer = loop.call_later(delay_s, self._write_bindings)

    def _write_bindings(self, retry: bool = True) -> None:
        """Records the bindings no transaction carried meanwhile."""
        self._bind_timer = None
        if not self._unbound:
            return
        try:
            with self._write():
                pass
        except sqlite3.Error as exc:
            logger.warning("recording bindings of tasks in flight failed: %r", exc)
            if retry:
                self._schedule_bindings(_BIND_RETRY_S)

    @staticmethod
    def _record_bindings(db: sqlite3.Connection, binds: list[tuple[str, str, float]]) -> None:
        """Binds pending rows to their runs; a run already counted keeps its one row."""
        for row_id, run_id, at in binds:
            changed = db.execute(
                "UPDATE OR IGNORE tasks SET run_id = ?, bound = ? WHERE id = ?",
                (run_id, at, row_id),
            ).rowcount
            if not changed:  # its run has a row (a reconciliation added it): drop this one
                db.execute("DELETE FROM tasks WHERE id = ? AND run_id IS NULL", (row_id,))

    def release(self, row_id: str) -> None:
        """Drops a row that was never bound (the request created no task)."""
        with self._write() as db:
            db.execute("DELETE FROM tasks WHERE id = ? AND run_id IS NULL", (row_id,))

    async def _in_flight(self, user: str, settings: Settings) -> set[str]:
        """The runs Prefect has in flight for the user, with those it cannot count yet."""
        in_flight = await in_flight_run_ids(
            self._client, user, limit=settings.max_tasks_in_flight * 2 + 10
        )
        if self._pending is not None:
            in_flight |= self._pending(user)
        return in_flight

    async def _reconcile_now(self, user: str, settings: Settings) -> bool:
        """Reconciles the user's rows with Prefect; False (logged) when it cannot be asked."""
        asked_at = time.time()
        try:
            in_flight = await self._in_flight(user, settings)
        except (httpx.HTTPError, OSError) as exc:
            # The next turn comes _SYNC_EVERY_S later, not at the next request.
            logger.warning("tasks in flight of %s not reconciled: %r", user, exc)
            return False
        self.reconcile(user, in_flight, asked_at)
        return True

    async def _reconcile_after_lull(self, user: str, settings: Settings) -> bool:
        """Reconciles once no task was asked for during _LULL_S (or after _LULL_MAX_S)."""
        deadline = time.monotonic() + _LULL_MAX_S
        while (now := time.monotonic()) < deadline and now - self._last_slot < _LULL_S:
            await asyncio.sleep(_LULL_S)
        return await self._reconcile_now(user, settings)

    @asynccontextmanager
    async def task_slot(
        self, user: str, settings: Settings, *, rate: bool = False
    ) -> AsyncIterator[LocalReservation]:
        """Holds a row for one new task of the user; 429 at max_tasks_in_flight (and, with
        `rate`, past the user's request rate, checked in the same transaction).

        Prefect is asked at the cap and at a user's first task, where the table's count is
        checked against it before the answer (503 at the cap when Prefect cannot be reached),
        and then every _SYNC_EVERY_S seconds per user beside the request, so runs started
        elsewhere (the CLI, a retry, another machine) count from then on without a Prefect
        round trip on the request path.
        """
        self._last_slot = time.monotonic()
        row_id, sync = await self.reserve(user, settings, rate=rate)
        if row_id is None:
            asked_at = time.time()
            try:
                in_flight = await self._in_flight(user, settings)
            except (httpx.HTTPError, OSError) as exc:
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE, f"cannot count tasks in flight: {exc!r}"
                ) from exc
            self.reconcile(user, in_flight, asked_at)
            row_id, _ = await self.reserve(user, settings)
        elif sync == "first":
            if await self._reconcile_now(user, settings) and not self.fits(row_id, user, settings):
                row_id = None
        elif sync == "due":
            task = asyncio.create_task(self._reconcile_after_lull(user, settings))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if row_id is None:
            raise tasks_refused(settings)
        reservation = LocalReservation(self, row_id)
        try:
            yield reservation
        finally:
            if not reservation.bound:  # a bound row is the task's: nothing to give back
                self.release(row_id)

    async def aclose(self) -> None:
        """Stops reconciliations under way and closes the database connection."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._bind_timer is not None:
            self._bind_timer.cancel()
        self._write_bindings(retry=False)  # a failure is logged: the rows expire after a lease
        self._db.close()
