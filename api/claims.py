"""Reserved flow runs and claims on them, in a SQLite file every API process on the machine opens.

`reserved` lists runs made ahead of demand (Prefect holds them as Scheduled "Reserved", far in
the future, so no worker or runner starts them). A request claims one in a local transaction
(shared with the other claims of its turn of the event loop, GroupCommit): the row moves to
`claims` with the task's owner, kind, parameters and scoped idempotency key, and the request
answers 202 at once. A pusher then writes the claim to Prefect; until it has, reads answer from
this table. Pushed claims stay for a while so that idempotent repeats find them here first.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from api.shared_sqlite import GroupCommit, open_shared, write_transaction

# The claims file under OCTAVIUS_HOME, shared by the machine's API processes.
CLAIMS_FILE: Final = "claims.sqlite3"
# An instance not seen for this long is gone: its reserved runs go to whoever notices.
INSTANCE_STALE_S: Final = 60.0
# Reserved runs older than this are never handed out (cleanup may delete them after a day).
RESERVED_MAX_AGE_S: Final = 12 * 3600.0
# Pushed claims are kept this long for idempotency lookups (Prefect has the key as a tag too).
PUSHED_RETENTION_S: Final = 7 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reserved (
    run_id TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    owner TEXT,
    created REAL NOT NULL,
    expected TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reserved_by_deployment ON reserved (deployment, created, expected);
CREATE TABLE IF NOT EXISTS claims (
    run_id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    parameters TEXT NOT NULL,
    scoped_key TEXT UNIQUE,
    created REAL NOT NULL,
    expected TEXT NOT NULL,
    cancelled INTEGER NOT NULL DEFAULT 0,
    pushed REAL,
    lease REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS claims_to_push ON claims (pushed, lease);
CREATE INDEX IF NOT EXISTS claims_by_user ON claims (user, created);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    seen REAL NOT NULL
);
"""

_CLAIM_COLUMNS = (
    "run_id, user, kind, parameters, scoped_key, created, expected, cancelled, pushed, error"
)


@dataclass(frozen=True)
class Claim:
    """A task answered from a reserved run; `pushed` once Prefect has its owner and state."""

    run_id: str
    user: str
    kind: str
    parameters: dict[str, Any]
    scoped_key: str | None
    created: float
    # The run's expected start time in Prefect: its reserved time, which it keeps when pushed.
    expected: datetime
    cancelled: bool
    pushed: float | None
    error: str | None

    @classmethod
    def _of(cls, row: tuple[Any, ...]) -> Claim:
        run_id, user, kind, parameters, key, created, expected, cancelled, pushed, error = row
        return cls(
            run_id,
            user,
            kind,
            json.loads(parameters),
            key,
            created,
            datetime.fromisoformat(expected),
            bool(cancelled),
            pushed,
            error,
        )


class ClaimStore:
    """The reserved and claims tables, in a SQLite file (WAL) under OCTAVIUS_HOME."""

    def __init__(self, path: Path) -> None:
        """A store on the database at `path`, created on first use."""
        self._db = open_shared(path, _SCHEMA)
        # Claims of one turn of the event loop (a burst of requests) share one transaction.
        self._group = GroupCommit(self._write)

    def close(self) -> None:
        """Closes the database connection."""
        self._db.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db)

    def add_reserved(self, deployment: str, runs: list[tuple[str, datetime]], owner: str) -> None:
        """Records runs just reserved in Prefect for the deployment, with their scheduled times."""
        now = time.time()
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO reserved (run_id, deployment, owner, created, expected) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, deployment, owner, now, at.isoformat()) for run_id, at in runs],
            )

    def count_reserved(self, deployment: str, owner: str | None = None) -> int:
        """The owner's (or every process's) reserved runs of the deployment that can still be
        claimed."""
        (count,) = self._db.execute(
            "SELECT count(*) FROM reserved WHERE deployment = ? AND (? IS NULL OR owner = ?) "
            "AND created > ?",
            (deployment, owner, owner, time.time() - RESERVED_MAX_AGE_S),
        ).fetchone()
        return int(count)

    def take_expired(self, owner: str) -> list[str]:
        """Removes and returns the owner's reserved runs too old to hand out."""
        with self._write() as db:
            rows = db.execute(
                "DELETE FROM reserved WHERE owner = ? AND created <= ? RETURNING run_id",
                (owner, time.time() - RESERVED_MAX_AGE_S),
            ).fetchall()
        return [run_id for (run_id,) in rows]

    def heartbeat(self, owner: str) -> int:
        """Marks the owner alive and adopts reserved runs of instances that are gone."""
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT INTO instances (id, seen) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seen = excluded.seen",
                (owner, now),
            )
            db.execute("DELETE FROM instances WHERE seen < ?", (now - INSTANCE_STALE_S,))
            adopted = db.execute(
                "UPDATE reserved SET owner = ? WHERE owner IS NULL "
                "OR owner NOT IN (SELECT id FROM instances)",
                (owner,),
            ).rowcount
            db.execute(
                "DELETE FROM claims WHERE pushed IS NOT NULL AND pushed < ?",
                (now - PUSHED_RETENTION_S,),
            )
        return int(adopted)

    def leave(self, owner: str) -> None:
        """Hands the owner's reserved runs to the next instance that starts (a clean stop)."""
        with self._write() as db:
            db.execute("UPDATE reserved SET owner = NULL WHERE owner = ?", (owner,))
            db.execute("DELETE FROM instances WHERE id = ?", (owner,))

    async def claim(
        self,
        deployment: str,
        *,
        user: str,
        kind: str,
        parameters: dict[str, Any],
        scoped_key: str | None,
    ) -> tuple[Claim, bool] | None:
        """Claims the oldest usable reserved run of the deployment for a new task.

        Returns the claim and True, or the earlier claim with the same scoped key and False,
        or None when no reserved run is left. The transaction is shared with the other claims
        of this turn of the event loop.
        """

        def work(db: sqlite3.Connection) -> tuple[Claim, bool] | None:
            now = time.time()
            if scoped_key is not None:
                row = db.execute(
                    f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE scoped_key = ?", (scoped_key,)
                ).fetchone()
                if row is not None:
                    return Claim._of(row), False
            found = db.execute(
                "SELECT run_id, expected FROM reserved WHERE deployment = ? AND created > ? "
                "ORDER BY created, expected LIMIT 1",
                (deployment, now - RESERVED_MAX_AGE_S),
            ).fetchone()
            if found is None:
                return None
            run_id, expected = found
            db.execute("DELETE FROM reserved WHERE run_id = ?", (run_id,))
            db.execute(
                "INSERT INTO claims (run_id, user, kind, parameters, scoped_key, created, "
                "expected) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, user, kind, json.dumps(parameters), scoped_key, now, expected),
            )
            claim = Claim(
                run_id,
                user,
                kind,
                parameters,
                scoped_key,
                now,
                datetime.fromisoformat(expected),
                False,
                None,
                None,
            )
            return claim, True

        return await self._group.run(work)

    def get(self, run_id: str) -> Claim | None:
        """The claim on a run, if this machine made one."""
        row = self._db.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE run_id = ?", (run_id,)
        ).fetchone()
        return Claim._of(row) if row is not None else None

    def by_key(self, scoped_key: str) -> Claim | None:
        """The claim made with a scoped idempotency key, if any."""
        row = self._db.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE scoped_key = ?", (scoped_key,)
        ).fetchone()
        return Claim._of(row) if row is not None else None

    def unpushed(self, user: str) -> list[Claim]:
        """The user's claims Prefect does not know as theirs yet, newest first."""
        rows = self._db.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE user = ? AND pushed IS NULL "
            "ORDER BY created DESC",
            (user,),
        ).fetchall()
        return [Claim._of(row) for row in rows]

    def pending_run_ids(self, user: str) -> set[str]:
        """Runs of the user's unpushed, uncancelled claims: tasks in flight Prefect cannot count."""
        rows = self._db.execute(
            "SELECT run_id FROM claims WHERE user = ? AND pushed IS NULL AND cancelled = 0",
            (user,),
        ).fetchall()
        return {run_id for (run_id,) in rows}

    def cancel(self, run_id: str) -> bool:
        """Records the cancellation of an unpushed claim; False once it was pushed."""
        with self._write() as db:
            changed = db.execute(
                "UPDATE claims SET cancelled = 1, lease = 0 WHERE run_id = ? AND pushed IS NULL",
                (run_id,),
            ).rowcount
        return bool(changed)

    def count_unpushed(self) -> int:
        """Claims waiting to be pushed, on this machine."""
        (count,) = self._db.execute("SELECT count(*) FROM claims WHERE pushed IS NULL").fetchone()
        return int(count)

    def lease_due(self, limit: int, lease_s: float) -> list[Claim]:
        """Up to `limit` unpushed claims nobody is pushing, leased to the caller for `lease_s`."""
        now = time.time()
        with self._write() as db:
            rows = db.execute(
                f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE pushed IS NULL AND lease <= ? "
                "ORDER BY created LIMIT ?",
                (now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE claims SET lease = ? WHERE run_id = ?",
                [(now + lease_s, row[0]) for row in rows],
            )
        return [Claim._of(row) for row in rows]

    def mark_pushed(self, claim: Claim, error: str | None = None) -> bool:
        """Records a push; False when the claim was cancelled meanwhile (push it again)."""
        with self._write() as db:
            changed = db.execute(
                "UPDATE claims SET pushed = ?, error = ? WHERE run_id = ? AND cancelled = ?",
                (time.time(), error, claim.run_id, int(claim.cancelled)),
            ).rowcount
            if not changed:
                db.execute("UPDATE claims SET lease = 0 WHERE run_id = ?", (claim.run_id,))
        return bool(changed)

    def postpone(self, claim: Claim, delay_s: float) -> int:
        """Leaves a failed push for `delay_s`; returns how many attempts failed so far."""
        with self._write() as db:
            row = db.execute(
                "UPDATE claims SET lease = ?, attempts = attempts + 1 WHERE run_id = ? "
                "RETURNING attempts",
                (time.time() + delay_s, claim.run_id),
            ).fetchone()
        return int(row[0]) if row else 0

    def attempts(self, run_id: str) -> int:
        """Failed pushes of a claim so far."""
        row = self._db.execute("SELECT attempts FROM claims WHERE run_id = ?", (run_id,)).fetchone()
        return int(row[0]) if row else 0
