"""The claims table: reserved runs handed out once, keys unique, cancellations before the push."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.claims import ClaimStore
from api.shared_sqlite import GroupCommit, open_shared, write_transaction
from deployments.names import AUDIT, INGEST


async def test_claims_hand_each_reserved_run_out_once_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "claims.sqlite3"
    mine, theirs = ClaimStore(path), ClaimStore(path)  # two API processes on one machine
    at = datetime.now(UTC) + timedelta(days=36525)
    mine.add_reserved(INGEST, [("r1", at), ("r2", at + timedelta(milliseconds=1))], "a")

    first = await mine.claim(
        INGEST, user="u", kind="ingest", parameters={"n": 1}, scoped_key="u/ingest/k"
    )
    assert first is not None and (first[0].run_id, first[1]) == ("r1", True)
    assert first[0].expected == at  # the time Prefect keeps as the run's expected start
    # The same scoped key in another process: the earlier claim, nothing taken.
    repeat = await theirs.claim(
        INGEST, user="u", kind="ingest", parameters={"n": 2}, scoped_key="u/ingest/k"
    )
    assert repeat is not None and (repeat[0].run_id, repeat[1]) == ("r1", False)
    assert repeat[0].parameters == {"n": 1}
    second = await theirs.claim(INGEST, user="v", kind="ingest", parameters={}, scoped_key=None)
    assert second is not None and second[0].run_id == "r2"
    none_left = await theirs.claim(INGEST, user="v", kind="ingest", parameters={}, scoped_key=None)
    assert none_left is None
    assert await mine.claim(AUDIT, user="u", kind="audit", parameters={}, scoped_key=None) is None
    assert mine.pending_run_ids("u") == {"r1"}
    mine.close()
    theirs.close()


async def test_claims_cancel_only_before_the_push_and_a_late_cancel_is_pushed_again(
    tmp_path: Path,
) -> None:
    store = ClaimStore(tmp_path / "claims.sqlite3")
    store.add_reserved(INGEST, [("r1", datetime.now(UTC))], "a")
    await store.claim(INGEST, user="u", kind="ingest", parameters={}, scoped_key=None)
    (leased,) = store.lease_due(4, 30.0)
    assert store.lease_due(4, 30.0) == []  # leased: no other pusher takes it
    assert store.cancel("r1")  # cancelled while the pusher works on the uncancelled claim
    assert not store.mark_pushed(leased)  # so the push does not count ...
    (again,) = store.lease_due(4, 30.0)  # ... and the claim is pushed again, cancelled
    assert again.cancelled
    assert store.mark_pushed(again)
    assert not store.cancel("r1")  # pushed: cancelling goes through Prefect now
    assert store.unpushed("u") == [] and store.pending_run_ids("u") == set()
    store.close()


def test_claims_runs_of_a_stopped_process_are_adopted(tmp_path: Path) -> None:
    store = ClaimStore(tmp_path / "claims.sqlite3")
    store.heartbeat("a")
    store.add_reserved(AUDIT, [("r1", datetime.now(UTC)), ("r2", datetime.now(UTC))], "a")
    assert store.heartbeat("b") == 0  # a is alive: its runs stay its own
    store.leave("a")  # a stops cleanly
    assert store.heartbeat("b") == 2
    assert store.count_reserved(AUDIT, "b") == 2
    store.close()


def test_shared_sqlite_writer_waits_for_another_connections_transaction(tmp_path: Path) -> None:
    schema = "CREATE TABLE IF NOT EXISTS t (x INTEGER);"
    waiting = open_shared(tmp_path / "x.sqlite3", schema)
    assert waiting.execute("PRAGMA busy_timeout").fetchone() == (0,)  # no 1 ms busy sleeps
    holding = threading.Event()

    def hold_the_lock() -> None:  # another process's transaction, 50 ms long
        other = open_shared(tmp_path / "x.sqlite3", schema)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        holding.set()
        time.sleep(0.05)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold_the_lock)
    thread.start()
    holding.wait()
    with pytest.raises(sqlite3.OperationalError):  # a bare BEGIN does not wait ...
        waiting.execute("BEGIN IMMEDIATE")
    with write_transaction(waiting) as db:  # ... a write transaction polls until it is free
        db.execute("INSERT INTO t VALUES (2)")
    thread.join()
    assert sorted(waiting.execute("SELECT x FROM t").fetchall()) == [(1,), (2,)]
    waiting.close()


def _counted_transactions(db: sqlite3.Connection) -> list[str]:
    """The BEGIN and COMMIT statements run on `db` from now on."""
    statements: list[str] = []
    db.set_trace_callback(
        lambda sql: statements.append(sql) if sql.startswith(("BEGIN", "COMMIT")) else None
    )
    return statements


async def test_shared_sqlite_group_commit_runs_one_turns_work_in_one_transaction(
    tmp_path: Path,
) -> None:
    db = open_shared(tmp_path / "x.sqlite3", "CREATE TABLE IF NOT EXISTS t (x INTEGER UNIQUE);")
    group = GroupCommit(lambda: write_transaction(db))
    statements = _counted_transactions(db)

    def insert(x: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t VALUES (?)", (x,))
            if x == 3:  # written, then refused: only this caller's work is undone
                raise ValueError("three")
            return x * 10

        return work

    outcomes = await asyncio.gather(
        *(group.run(insert(x)) for x in (1, 2, 3, 1, 4)), return_exceptions=True
    )
    assert outcomes[:2] == [10, 20]
    assert isinstance(outcomes[2], ValueError)  # undone alone
    assert isinstance(outcomes[3], sqlite3.IntegrityError)  # 1 again: unique
    assert outcomes[4] == 40
    assert statements == ["BEGIN IMMEDIATE", "COMMIT"]  # five callers, one transaction
    assert sorted(db.execute("SELECT x FROM t").fetchall()) == [(1,), (2,), (4,)]
    # Work asked for in a later turn goes into the next transaction.
    assert await group.run(insert(5)) == 50
    assert await group.run(insert(6)) == 60
    assert statements.count("COMMIT") == 3
    db.close()


async def test_shared_sqlite_group_commit_hands_out_nothing_of_a_failed_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.sqlite3"
    db = open_shared(path, "CREATE TABLE IF NOT EXISTS t (x INTEGER);")

    @contextlib.contextmanager
    def failing_commit() -> Iterator[sqlite3.Connection]:
        with write_transaction(db) as conn:
            yield conn
            raise sqlite3.OperationalError("disk I/O error")  # as a failed COMMIT: rolled back

    group = GroupCommit(failing_commit)

    def insert(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t VALUES (1)")
        return "written"

    outcomes = await asyncio.gather(group.run(insert), group.run(insert), return_exceptions=True)
    assert [type(o) for o in outcomes] == [sqlite3.OperationalError] * 2
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    # A caller cancelled before its turn has its work skipped.
    group = GroupCommit(lambda: write_transaction(db))
    cancelled = asyncio.ensure_future(group.run(insert))
    await asyncio.sleep(0)  # it is waiting for the group now
    kept = asyncio.ensure_future(group.run(insert))
    cancelled.cancel()
    assert await kept == "written"
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)
    db.close()
