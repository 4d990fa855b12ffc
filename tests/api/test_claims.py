"""The claims table: reserved runs handed out once, keys unique, cancellations before the push."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.claims import ClaimStore
from api.shared_sqlite import open_shared, write_transaction
from deployments.names import AUDIT, INGEST


def test_claims_hand_each_reserved_run_out_once_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "claims.sqlite3"
    mine, theirs = ClaimStore(path), ClaimStore(path)  # two API processes on one machine
    at = datetime.now(UTC) + timedelta(days=36525)
    mine.add_reserved(INGEST, [("r1", at), ("r2", at + timedelta(milliseconds=1))], "a")

    first = mine.claim(
        INGEST, user="u", kind="ingest", parameters={"n": 1}, scoped_key="u/ingest/k"
    )
    assert first is not None and (first[0].run_id, first[1]) == ("r1", True)
    assert first[0].expected == at  # the time Prefect keeps as the run's expected start
    # The same scoped key in another process: the earlier claim, nothing taken.
    repeat = theirs.claim(
        INGEST, user="u", kind="ingest", parameters={"n": 2}, scoped_key="u/ingest/k"
    )
    assert repeat is not None and (repeat[0].run_id, repeat[1]) == ("r1", False)
    assert repeat[0].parameters == {"n": 1}
    second = theirs.claim(INGEST, user="v", kind="ingest", parameters={}, scoped_key=None)
    assert second is not None and second[0].run_id == "r2"
    assert theirs.claim(INGEST, user="v", kind="ingest", parameters={}, scoped_key=None) is None
    assert mine.claim(AUDIT, user="u", kind="audit", parameters={}, scoped_key=None) is None
    assert mine.pending_run_ids("u") == {"r1"}
    mine.close()
    theirs.close()


def test_claims_cancel_only_before_the_push_and_a_late_cancel_is_pushed_again(
    tmp_path: Path,
) -> None:
    store = ClaimStore(tmp_path / "claims.sqlite3")
    store.add_reserved(INGEST, [("r1", datetime.now(UTC))], "a")
    store.claim(INGEST, user="u", kind="ingest", parameters={}, scoped_key=None)
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
