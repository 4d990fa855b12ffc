"""Cleanup of the storage URL on an S3 stand-in: old uploads and results go, fresh and used stay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import s3fs

from api.uploads import new_upload_dir, write_upload_bytes
from core.ops_models import CleanupKind
from core.settings import get_settings
from core.storage import join, remove_tree, results_location, uploads_location
from tasks.cleanup import ActiveReferences, find_files, find_stored_results, remove_items
from tests.storage.conftest import bucket_keys, storage_options

NO_RUNS = ActiveReferences(strings=[], oldest_start=None, run_ids=[])


@dataclass(frozen=True)
class Litter:
    """URLs of what the bucket holds, and the moment that separates old from fresh."""

    old: str
    in_use: str
    in_use_file: str
    fresh: str
    stray: str
    old_result: str
    fresh_result: str
    old_modified: datetime
    fresh_modified: datetime


def _modified(url: str, endpoint: str) -> datetime:
    """LastModified of an object, read straight from the S3 server."""
    fs = s3fs.S3FileSystem(**storage_options(endpoint), skip_instance_cache=True)
    modified: datetime = fs.info(url)["LastModified"]
    return modified


def _keys(url: str, endpoint: str, prefix: str) -> list[str]:
    return [f"s3://{key}" for key in bucket_keys(url, endpoint, prefix)]


@pytest.fixture
def shared(
    storage_env: dict[str, str], octavius_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The storage URL with one-hour retentions, emptied after the test."""
    for key, value in storage_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OCTAVIUS_UPLOAD_RETENTION_HOURS", "1")
    monkeypatch.setenv("OCTAVIUS_RESULT_RETENTION_HOURS", "1")
    get_settings.cache_clear()
    url = storage_env["OCTAVIUS_STORAGE_URL"]
    yield url
    remove_tree(f"{url}/uploads")
    remove_tree(f"{url}/results")
    get_settings.cache_clear()


@pytest.fixture
def litter(shared: str, s3_endpoint: str) -> Litter:
    """Old uploads (one named by a run) and an old result, then a fresh upload and result.

    S3 sets LastModified itself, to the second: the fresh objects are written once the
    clock has moved past the second of the old ones.
    """
    settings = get_settings()
    uploads, results = uploads_location(settings), results_location(settings)
    old = new_upload_dir(uploads, "acme")
    write_upload_bytes(old, "a.txt", b"12345")
    write_upload_bytes(old, "b.md", b"678")
    in_use = new_upload_dir(uploads, "acme")
    in_use_file = write_upload_bytes(in_use, "in-use.txt", b"in use")
    # Directly under a user's folder, outside any request: not an upload, as on disk.
    stray = write_upload_bytes(join(uploads, "acme"), "stray.txt", b"stray")
    old_result = write_upload_bytes(results, "old-result", b"{}")
    old_modified = _modified(old_result, s3_endpoint)
    time.sleep(1.1)
    fresh = new_upload_dir(uploads, "acme")
    fresh_file = write_upload_bytes(fresh, "fresh.txt", b"fresh")
    fresh_result = write_upload_bytes(results, "fresh-result", b"{}")
    fresh_modified = min(_modified(fresh_file, s3_endpoint), _modified(fresh_result, s3_endpoint))
    assert old_modified < fresh_modified
    return Litter(
        old=old,
        in_use=in_use,
        in_use_file=in_use_file,
        fresh=fresh,
        stray=stray,
        old_result=old_result,
        fresh_result=fresh_result,
        old_modified=old_modified,
        fresh_modified=fresh_modified,
    )


def test_storage_cleanup_removes_exactly_the_old_uploads_and_results(
    litter: Litter, shared: str, s3_endpoint: str
) -> None:
    settings = get_settings()
    # One hour after the fresh objects were written, with one-hour retentions: the old
    # ones are past the cutoff, the fresh ones are at it.
    now = litter.fresh_modified + timedelta(hours=1)
    references = ActiveReferences(strings=[litter.in_use_file], oldest_start=None, run_ids=[])
    found, kept = find_files(settings, now, references)
    assert [(item.kind, item.target, item.bytes) for item in found] == [
        (CleanupKind.UPLOAD, litter.old, 8),
        (CleanupKind.RESULT, litter.old_result, 2),
    ]
    assert found[0].detail == f"last modified {litter.old_modified:%Y-%m-%d %H:%M} UTC"
    assert [(item.kind, item.target, item.detail) for item in kept] == [
        (CleanupKind.UPLOAD, litter.in_use, "named by an active task")
    ]

    assert remove_items(found, store=None) == []  # type: ignore[arg-type]
    assert _keys(shared, s3_endpoint, "uploads") == sorted(
        [litter.in_use_file, f"{litter.fresh}/fresh.txt", litter.stray]
    )
    assert _keys(shared, s3_endpoint, "results") == [litter.fresh_result]
    assert find_files(settings, now, references) == ([], kept)


def test_storage_cleanup_unnamed_old_upload_goes(litter: Litter) -> None:
    now = litter.fresh_modified + timedelta(hours=1)
    found, kept = find_files(get_settings(), now, NO_RUNS)
    uploads = {item.target for item in found if item.kind is CleanupKind.UPLOAD}
    assert uploads == {litter.old, litter.in_use}
    assert kept == []


@pytest.mark.parametrize(
    ("oldest_start", "expected"),
    [
        # no active run: only the retention decides, and it takes both
        (None, {"old", "fresh"}),
        # a run began before the old result was written: it may read either
        ("before_old", set()),
        # a run began with the fresh one: only the old result is out of its reach
        ("between", {"old"}),
    ],
)
def test_storage_cleanup_keeps_results_an_active_run_may_read(
    litter: Litter, oldest_start: str | None, expected: set[str]
) -> None:
    starts = {
        None: None,
        "before_old": litter.old_modified - timedelta(seconds=1),
        "between": litter.fresh_modified,
    }
    references = ActiveReferences(strings=[], oldest_start=starts[oldest_start], run_ids=["r"])
    cutoff = litter.fresh_modified + timedelta(hours=1)
    found = find_stored_results(results_location(get_settings()), cutoff, references)
    urls = {"old": litter.old_result, "fresh": litter.fresh_result}
    assert {item.target for item in found} == {urls[name] for name in expected}
