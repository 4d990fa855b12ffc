"""Cleanup through Prefect's harness and the embedded store: dry run, real run, in-use data kept."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled

from core.ops_models import CleanupItem, CleanupKind, CleanupReport
from core.settings import get_settings
from core.store import get_store
from core.store.edge import VERSIONS_FILE
from deployments.names import RESERVED_STATE, RESERVED_TAG
from flows.cleanup import cleanup_resources
from tasks.cleanup import find_reserved_runs, remove_items
from tests.core.test_store import DIM, make_points

OLD = time.time() - 30 * 24 * 3600
LIMITS = ["octavius-rate:1pm:1:user:bob", "octavius-rate:600pm:60:user:bob"]


@flow(name="cleanup-test-consumer")
def consumer(paths: list[str]) -> None:
    """A flow whose scheduled run names an upload, as an ingestion does."""


def _age(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        os.utime(p, (OLD, OLD))


async def _limit_names() -> set[str]:
    async with get_client() as client:
        return {limit.name for limit in await client.read_global_concurrency_limits(limit=200)}


@pytest.fixture
def litter(prefect_harness: None, octavius_home: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Old and fresh uploads and results, an orphan document, expired versions, old limits."""
    settings = get_settings()
    uploads = settings.uploads_dir / "acme"
    paths = {}
    for name in ("old", "in-use", "fresh"):
        folder = uploads / uuid.uuid4().hex
        folder.mkdir(parents=True)
        (folder / f"{name}.txt").write_text(name)
        paths[name] = str(folder)
    _age(Path(paths["old"]))
    _age(Path(paths["in-use"]))
    settings.results_dir.mkdir(parents=True)
    (settings.results_dir / "old-result").write_text("{}")
    (settings.results_dir / "new-result").write_text("{}")
    _age(settings.results_dir / "old-result")
    paths["old-result"] = str(settings.results_dir / "old-result")

    store = get_store(settings)
    store.ensure_collection(DIM)
    v2 = store.create_version(DIM)
    store.activate(v2.name)
    meta = json.loads((settings.store_dir / VERSIONS_FILE).read_text())
    meta["octavius_v1"]["retired_at"] = "2020-01-01T00:00:00+00:00"  # long past its grace
    (settings.store_dir / VERSIONS_FILE).write_text(json.dumps(meta))
    store.create_version(DIM, owner=str(uuid.uuid4()))  # a reindex run that no longer exists
    kept_source = tmp_path / "kept.txt"
    kept_source.write_text("still here")
    points = [
        p.model_copy(update={"payload": p.payload.model_copy(update={"source": source})})
        for doc, source in (("gone", str(tmp_path / "gone.txt")), ("kept", str(kept_source)))
        for p in make_points("acme", doc, 2)
    ]
    store.upsert(points)
    paths["gone"] = next(d.doc_id for d in store.documents("acme").values() if "gone" in d.source)

    async def setup_prefect() -> uuid.UUID:
        async with get_client() as client:
            for name in LIMITS:
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=10)
                )
            in_use = str(Path(paths["in-use"]).resolve() / "in-use.txt")
            run = await client.create_flow_run(
                consumer, parameters={"paths": [in_use]}, state=Scheduled()
            )
            return run.id

    run_id = asyncio.run(setup_prefect())
    yield paths

    async def teardown_prefect() -> None:
        async with get_client() as client:
            await client.delete_flow_run(run_id)
            for name in LIMITS:
                with contextlib.suppress(ObjectNotFound):  # cleanup removed the old one
                    await client.delete_global_concurrency_limit_by_name(name)

    asyncio.run(teardown_prefect())


def _targets(report: CleanupReport, kind: CleanupKind) -> set[str]:
    return {item.target for item in report.removed if item.kind is kind}


def test_cleanup_dry_run_lists_and_real_run_removes(litter: dict[str, str]) -> None:
    settings = get_settings()
    store = get_store(settings)
    dry = cleanup_resources(dry_run=True)
    expected = {
        CleanupKind.UPLOAD: {litter["old"]},
        CleanupKind.RESULT: {litter["old-result"]},
        CleanupKind.ORPHAN_DOCUMENT: {f"acme/{litter['gone']}"},
        CleanupKind.COLLECTION_VERSION: {"octavius_v1", "octavius_v3"},
        CleanupKind.RATE_LIMIT: {LIMITS[0]},
        CleanupKind.RESERVED_RUN: set(),  # none older than a day (see the test below)
    }
    assert {kind: _targets(dry, kind) for kind in CleanupKind} == expected
    # the upload an active run names is old but kept
    assert [(item.kind, item.target) for item in dry.kept] == [
        (CleanupKind.UPLOAD, litter["in-use"])
    ]
    # a dry run removes nothing
    assert Path(litter["old"]).exists() and Path(litter["old-result"]).exists()
    assert [v.name for v in store.versions()] == ["octavius_v1", "octavius_v2", "octavius_v3"]
    assert len(store.documents("acme")) == 2
    assert set(LIMITS) <= asyncio.run(_limit_names())

    real = cleanup_resources()
    assert real.errors == []
    assert {kind: _targets(real, kind) for kind in CleanupKind} == expected
    assert not Path(litter["old"]).exists() and not Path(litter["old-result"]).exists()
    assert Path(litter["in-use"]).exists() and Path(litter["fresh"]).exists()
    assert (settings.results_dir / "new-result").exists()
    assert [(v.name, v.live) for v in store.versions()] == [("octavius_v2", True)]
    assert [d.source.endswith("kept.txt") for d in store.documents("acme").values()] == [True]
    names = asyncio.run(_limit_names())
    assert LIMITS[0] not in names and LIMITS[1] in names

    again = cleanup_resources(dry_run=True)
    assert again.removed == []


@pytest.fixture
def stored_litter(
    prefect_harness: None, octavius_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Old, in-use and fresh uploads and an old and a fresh result under a file:// storage URL."""
    shared = tmp_path / "shared"
    url = f"file://{shared}"
    monkeypatch.setenv("OCTAVIUS_STORAGE_URL", url)
    get_settings.cache_clear()
    urls = {}
    for name in ("old", "in-use", "fresh"):
        request = uuid.uuid4().hex
        folder = shared / "uploads" / "acme" / request
        folder.mkdir(parents=True)
        (folder / f"{name}.txt").write_text(name)
        if name != "fresh":
            _age(folder)
        urls[name] = f"{url}/uploads/acme/{request}"
    (shared / "results").mkdir()
    for name in ("old-result", "new-result"):
        (shared / "results" / name).write_text("{}")
        urls[name] = f"{url}/results/{name}"
    _age(shared / "results" / "old-result")

    async def schedule() -> uuid.UUID:
        async with get_client() as client:
            in_use = f"{urls['in-use']}/in-use.txt"
            run = await client.create_flow_run(
                consumer, parameters={"paths": [in_use]}, state=Scheduled()
            )
            return run.id

    run_id = asyncio.run(schedule())
    yield urls

    async def drop() -> None:
        async with get_client() as client:
            await client.delete_flow_run(run_id)

    asyncio.run(drop())
    get_settings.cache_clear()


def _local(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def test_cleanup_prunes_the_storage_url(stored_litter: dict[str, str]) -> None:
    dry = cleanup_resources(dry_run=True)
    expected = {
        CleanupKind.UPLOAD: {stored_litter["old"]},
        CleanupKind.RESULT: {stored_litter["old-result"]},
    }
    assert {kind: _targets(dry, kind) for kind in expected} == expected
    assert [(item.kind, item.target) for item in dry.kept] == [
        (CleanupKind.UPLOAD, stored_litter["in-use"])
    ]
    assert all(_local(url).exists() for url in stored_litter.values())

    real = cleanup_resources()
    assert real.errors == []
    assert {kind: _targets(real, kind) for kind in expected} == expected
    assert not _local(stored_litter["old"]).exists()
    assert not _local(stored_litter["old-result"]).exists()
    for name in ("in-use", "fresh", "new-result"):
        assert _local(stored_litter[name]).exists()


def test_cleanup_deletes_reserved_runs_a_day_old_and_nothing_else(prefect_harness: None) -> None:
    async def make() -> tuple[uuid.UUID, uuid.UUID]:
        far = datetime.now(UTC) + timedelta(days=36525)
        async with get_client() as client:
            reserved = await client.create_flow_run(
                consumer,
                parameters={"paths": []},
                state=Scheduled(name=RESERVED_STATE, scheduled_time=far),
                tags=[RESERVED_TAG],
            )
            claimed = await client.create_flow_run(
                consumer, parameters={"paths": []}, state=Scheduled(), tags=["user:bob"]
            )
            return reserved.id, claimed.id

    reserved, claimed = asyncio.run(make())
    # The session's Prefect server also holds reserved runs of the API tests' processes:
    # look only at this test's two runs.
    ours = {str(reserved), str(claimed)}

    def found_at(now: datetime) -> list[CleanupItem]:
        return [item for item in find_reserved_runs(now) if item.target in ours]

    assert found_at(datetime.now(UTC)) == []  # made just now: left alone
    found = found_at(datetime.now(UTC) + timedelta(days=2))
    assert [(item.kind, item.target) for item in found] == [
        (CleanupKind.RESERVED_RUN, str(reserved))
    ]
    assert remove_items(found, store=None) == []  # type: ignore[arg-type]

    async def exists(run_id: uuid.UUID) -> bool:
        async with get_client() as client:
            try:
                await client.read_flow_run(run_id)
            except ObjectNotFound:
                return False
            return True

    assert not asyncio.run(exists(reserved))
    assert asyncio.run(exists(claimed))  # a claimed run is never touched

    async def drop() -> None:
        async with get_client() as client:
            await client.delete_flow_run(claimed)

    asyncio.run(drop())
