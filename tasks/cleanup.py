"""Find and remove what outlived its retention, sparing anything an active task still uses.

Each `find_*` function only lists; `remove_items` deletes what was listed, so a dry run is the
same search without the second step. Active tasks are the flow runs Prefect holds as
scheduled, pending, running, paused or cancelling: an upload folder named in their parameters
stays, and no persisted result newer than the oldest of them goes. With a storage URL the same
rules apply to `<url>/uploads` and `<url>/results` as to the local folders.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterTags,
)
from pydantic import BaseModel

from core.ops_models import CleanupItem, CleanupKind, CleanupReport
from core.settings import Settings, get_settings
from core.storage import (
    StoredFile,
    is_url,
    join,
    remove_tree,
    results_location,
    stored_files,
    uploads_location,
)
from core.store import VectorStore, get_store
from core.store.base import CollectionVersion
from deployments.names import RESERVED_STATE, RESERVED_TAG
from tasks.runs import _pages, active_flow_runs, is_run_active, string_values

logger = logging.getLogger(__name__)

RATE_LIMIT_PREFIX = "octavius-rate:"
RESERVED_RUN_RETENTION = timedelta(days=1)
_LIMITS_PAGE = 200


class ActiveReferences(BaseModel):
    """What the active flow runs may still read."""

    strings: list[str]
    oldest_start: datetime | None
    run_ids: list[str]


def active_references() -> ActiveReferences:
    """Every string in the parameters of active flow runs, and when the oldest one began."""
    runs = active_flow_runs()
    starts = [r.start_time or r.expected_start_time or r.created for r in runs]
    known = [s for s in starts if s is not None]
    return ActiveReferences(
        strings=sorted({s for run in runs for s in string_values(run.parameters)}),
        oldest_start=min(known) if known else None,
        run_ids=[str(run.id) for run in runs],
    )


def _newest_mtime(path: Path) -> float:
    """The latest modification time of a folder or anything in it."""
    times = [path.stat().st_mtime]
    times += [p.stat().st_mtime for p in path.rglob("*")]
    return max(times)


def _size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _referenced(folder: Path, strings: Iterable[str]) -> bool:
    """Whether any parameter string names the folder or something inside it."""
    return _names(str(folder.resolve()), strings)


def _names(location: str, strings: Iterable[str]) -> bool:
    """Whether any string is the path or URL `location` or lies below it."""
    return any(s == location or s.startswith(location + "/") for s in strings)


def _last_modified(modified: datetime) -> str:
    """The detail of an old upload or result."""
    return f"last modified {modified:%Y-%m-%d %H:%M} UTC"


def _file_upload(
    item: CleanupItem, in_use: bool, remove: list[CleanupItem], kept: list[CleanupItem]
) -> None:
    """Puts an old upload on the kept list (an active task names it) or the one to remove."""
    if in_use:
        kept.append(item.model_copy(update={"detail": "named by an active task"}))
    else:
        remove.append(item)


def find_uploads(
    uploads_dir: Path, cutoff: datetime, references: ActiveReferences
) -> tuple[list[CleanupItem], list[CleanupItem]]:
    """Upload folders (one per request, per user) untouched since the cutoff: (to remove, kept)."""
    remove: list[CleanupItem] = []
    kept: list[CleanupItem] = []
    if not uploads_dir.is_dir():
        return remove, kept
    for user_dir in sorted(p for p in uploads_dir.iterdir() if p.is_dir()):
        for folder in sorted(p for p in user_dir.iterdir() if p.is_dir()):
            modified = datetime.fromtimestamp(_newest_mtime(folder), UTC)
            if modified >= cutoff:
                continue
            item = CleanupItem(
                kind=CleanupKind.UPLOAD,
                target=str(folder),
                detail=_last_modified(modified),
                bytes=_size(folder),
            )
            _file_upload(item, _referenced(folder, references.strings), remove, kept)
    return remove, kept


def find_results(
    results_dir: Path, cutoff: datetime, references: ActiveReferences
) -> list[CleanupItem]:
    """Persisted results and cache records older than the cutoff and than every active run."""
    if references.oldest_start is not None:
        cutoff = min(cutoff, references.oldest_start)
    if not results_dir.is_dir():
        return []
    found = []
    for path in sorted(p for p in results_dir.rglob("*") if p.is_file()):
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        if modified < cutoff:
            found.append(
                CleanupItem(
                    kind=CleanupKind.RESULT,
                    target=str(path),
                    detail=_last_modified(modified),
                    bytes=path.stat().st_size,
                )
            )
    return found


def find_stored_uploads(
    location: str, cutoff: datetime, references: ActiveReferences
) -> tuple[list[CleanupItem], list[CleanupItem]]:
    """Upload prefixes `<location>/<user>/<request>` untouched since the cutoff: (to remove,
    kept)."""
    folders: dict[tuple[str, ...], list[StoredFile]] = {}
    for stored in stored_files(location):
        # As on disk, only objects inside a request's folder belong to an upload.
        if len(stored.parts) > 2:
            folders.setdefault(stored.parts[:2], []).append(stored)
    remove: list[CleanupItem] = []
    kept: list[CleanupItem] = []
    for parts, files in sorted(folders.items()):
        modified = max(f.modified for f in files)
        if modified >= cutoff:
            continue
        target = join(location, *parts)
        item = CleanupItem(
            kind=CleanupKind.UPLOAD,
            target=target,
            detail=_last_modified(modified),
            bytes=sum(f.size for f in files),
        )
        _file_upload(item, _names(target, references.strings), remove, kept)
    return remove, kept


def find_stored_results(
    location: str, cutoff: datetime, references: ActiveReferences
) -> list[CleanupItem]:
    """Objects below `location` older than the cutoff and than every active run."""
    if references.oldest_start is not None:
        cutoff = min(cutoff, references.oldest_start)
    return [
        CleanupItem(
            kind=CleanupKind.RESULT,
            target=stored.url,
            detail=_last_modified(stored.modified),
            bytes=stored.size,
        )
        for stored in stored_files(location)
        if stored.modified < cutoff
    ]


def find_files(
    settings: Settings, now: datetime, references: ActiveReferences
) -> tuple[list[CleanupItem], list[CleanupItem]]:
    """Old uploads and results in the local folders and under the storage URL: (to remove,
    kept because in use)."""
    upload_cutoff = now - timedelta(hours=settings.upload_retention_hours)
    result_cutoff = now - timedelta(hours=settings.result_retention_hours)
    uploads, kept = find_uploads(settings.uploads_dir, upload_cutoff, references)
    results = find_results(settings.results_dir, result_cutoff, references)
    if settings.storage_url:
        location = uploads_location(settings)
        stored_uploads, stored_kept = find_stored_uploads(location, upload_cutoff, references)
        uploads += stored_uploads
        kept += stored_kept
        results += find_stored_results(results_location(settings), result_cutoff, references)
    return [*uploads, *results], kept


def find_orphan_documents(store: VectorStore, references: ActiveReferences) -> list[CleanupItem]:
    """Documents whose source file is gone while its folder is still there."""
    found = []
    for tenant in store.tenants():
        for document in store.documents(tenant).values():
            source = Path(document.source)
            # A relative source is an upload's name, and a missing folder may be a share that
            # is not mounted here: neither says the document is gone.
            if not source.is_absolute() or source.exists() or not source.parent.is_dir():
                continue
            if document.source in references.strings:
                continue
            found.append(
                CleanupItem(
                    kind=CleanupKind.ORPHAN_DOCUMENT,
                    target=f"{tenant}/{document.doc_id}",
                    detail=f"{document.source} no longer exists ({document.chunk_count} chunks)",
                )
            )
    return found


def find_versions(store: VectorStore, now: datetime, grace: timedelta) -> list[CollectionVersion]:
    """Collection versions past their grace period, and versions a dead reindex half built."""
    found = []
    for version in store.versions():
        if version.live:
            continue
        if version.building:
            if version.owner is not None and not is_run_active(version.owner):
                found.append(version)
            continue
        since = version.retired_at or version.created_at
        if since is None or since + grace < now:
            found.append(version)
    return found


def find_rate_limits(settings: Settings) -> list[CleanupItem]:
    """Per-user rate limits in Prefect named after a rate or burst no longer configured."""
    current = f"{RATE_LIMIT_PREFIX}{settings.rate_limit_per_minute}pm:{settings.rate_limit_burst}:"
    found = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_global_concurrency_limits(limit=_LIMITS_PAGE, offset=offset)
            for limit in page:
                if limit.name.startswith(RATE_LIMIT_PREFIX) and not limit.name.startswith(current):
                    found.append(
                        CleanupItem(
                            kind=CleanupKind.RATE_LIMIT,
                            target=limit.name,
                            detail=f"configured rate is now {current.removesuffix(':')}",
                        )
                    )
            if len(page) < _LIMITS_PAGE:
                break
            offset += len(page)
    return found


def find_reserved_runs(now: datetime) -> list[CleanupItem]:
    """Runs an API process reserved ahead of demand more than a day ago and never handed out
    (the API itself retires its own after 12 hours: these belong to one that is gone)."""
    reserved = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[RESERVED_TAG]),
        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=[RESERVED_STATE])),
    )
    with get_client(sync_client=True) as client:
        return [
            CleanupItem(kind=CleanupKind.RESERVED_RUN, target=str(run.id), detail="never claimed")
            for run in _pages(client, reserved)
            if run.created is not None and run.created < now - RESERVED_RUN_RETENTION
        ]


def remove_items(items: Sequence[CleanupItem], store: VectorStore) -> list[str]:
    """Deletes what was found; returns one error line per item that could not be removed."""
    errors = []
    for item in items:
        try:
            if item.kind in (CleanupKind.UPLOAD, CleanupKind.RESULT):
                _remove_file_item(item.target)
            elif item.kind is CleanupKind.ORPHAN_DOCUMENT:
                tenant, doc_id = item.target.rsplit("/", 1)
                store.delete_documents(tenant, [doc_id])
            elif item.kind is CleanupKind.COLLECTION_VERSION:
                store.drop_version(item.target)
            elif item.kind is CleanupKind.RATE_LIMIT:
                with get_client(sync_client=True) as client:
                    client.delete_global_concurrency_limit_by_name(item.target)
            elif item.kind is CleanupKind.RESERVED_RUN:
                with get_client(sync_client=True) as client:
                    client.delete_flow_run(UUID(item.target))
        except Exception as exc:
            logger.warning("could not remove %s %s: %s", item.kind.value, item.target, exc)
            errors.append(f"{item.kind.value} {item.target}: {exc}")
    return errors


def _remove_file_item(target: str) -> None:
    """Deletes an upload folder or result, on disk or under the storage URL."""
    if is_url(target):
        remove_tree(target)
        return
    path = Path(target)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def report_markdown(report: CleanupReport) -> str:
    """The cleanup report as markdown for the Prefect UI."""
    verb = "Would remove" if report.dry_run else "Removed"
    lines = [
        f"# Cleanup{' (dry run)' if report.dry_run else ''}",
        "",
        f"{verb} {len(report.removed)} item(s); kept {len(report.kept)} in use; "
        f"{len(report.errors)} error(s); {report.seconds:.1f} s.",
        "",
        "| kind | target | detail | bytes |",
        "|---|---|---|---|",
    ]
    for item in report.removed:
        cells = [item.kind.value, item.target, item.detail, str(item.bytes)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for item in report.kept:
        cells = [f"{item.kind.value} (kept)", item.target, item.detail, str(item.bytes)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += [f"- error: {error}" for error in report.errors]
    return "\n".join(lines)


@task(name="active-references", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def active_references_task() -> ActiveReferences:
    """Reads the active flow runs from Prefect."""
    return active_references()


@task(name="find-files", cache_policy=NO_CACHE)
def find_files_task(references: ActiveReferences) -> tuple[list[CleanupItem], list[CleanupItem]]:
    """Lists old uploads and results: (to remove, kept because in use)."""
    return find_files(get_settings(), datetime.now(UTC), references)


@task(name="find-store-items", cache_policy=NO_CACHE)
def find_store_items_task(references: ActiveReferences) -> list[CleanupItem]:
    """Lists orphan documents and expired collection versions."""
    settings = get_settings()
    store = get_store(settings)
    items = find_orphan_documents(store, references) if settings.cleanup_missing_sources else []
    grace = timedelta(hours=settings.reindex_grace_hours)
    for version in find_versions(store, datetime.now(UTC), grace):
        when = version.retired_at or version.created_at
        detail = (
            "half built by a reindex that is not running"
            if version.building
            else (f"retired {when:%Y-%m-%d %H:%M} UTC" if when else "never live")
        )
        items.append(
            CleanupItem(kind=CleanupKind.COLLECTION_VERSION, target=version.name, detail=detail)
        )
    return items


@task(name="find-rate-limits", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def find_rate_limits_task() -> list[CleanupItem]:
    """Lists rate limits of an old configuration."""
    return find_rate_limits(get_settings())


@task(name="find-reserved-runs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def find_reserved_runs_task() -> list[CleanupItem]:
    """Prefect-task wrapper of `find_reserved_runs` at the current time."""
    return find_reserved_runs(datetime.now(UTC))


@task(name="remove-items", cache_policy=NO_CACHE)
def remove_items_task(items: list[CleanupItem]) -> list[str]:
    """Removes what was found."""
    return remove_items(items, get_store(get_settings()))


@task(name="publish-cleanup-report", cache_policy=NO_CACHE)
def publish_cleanup_report_task(report: CleanupReport) -> None:
    """Attaches the report to the flow run as a markdown artifact."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        markdown=report_markdown(report), key="cleanup-report", description="Cleanup report"
    )
