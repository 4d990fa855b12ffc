"""Cleanup: list what outlived its retention, remove it unless a dry run, report."""

from __future__ import annotations

import time

from prefect import flow

from core.ops_models import CleanupReport
from deployments.names import CLEANUP_FLOW
from tasks.cleanup import (
    active_references_task,
    find_files_task,
    find_rate_limits_task,
    find_reserved_runs_task,
    find_store_items_task,
    publish_cleanup_report_task,
    remove_items_task,
)
from tasks.runs import mark_dead_letter


@flow(
    name=CLEANUP_FLOW,
    persist_result=True,
    on_failure=[mark_dead_letter],
    on_crashed=[mark_dead_letter],
)
def cleanup_resources(dry_run: bool = False) -> CleanupReport:
    """Removes old uploads and results, orphan points, expired collection versions and stale
    rate limits, sparing what active tasks use; with dry_run, only lists them."""
    started = time.monotonic()
    references = active_references_task()
    files, kept = find_files_task(references)
    items = [*files, *find_store_items_task(references), *find_rate_limits_task()]
    items += find_reserved_runs_task()
    errors = [] if dry_run else remove_items_task(items)
    failed = {error.split(": ", 1)[0] for error in errors}
    report = CleanupReport(
        dry_run=dry_run,
        removed=[i for i in items if f"{i.kind.value} {i.target}" not in failed],
        kept=kept,
        errors=errors,
        seconds=round(time.monotonic() - started, 3),
    )
    publish_cleanup_report_task(report)
    return report


if __name__ != "flows.cleanup":
    # Prefect loads the entrypoint as a top-level module; hand out the importable module's flow.
    import flows.cleanup as _importable

    cleanup_resources = _importable.cleanup_resources
