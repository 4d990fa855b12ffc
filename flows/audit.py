"""Document audit: load the policy, open each PDF, run the four auditors concurrently, report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed

from core.audit_models import AuditBatchReport, Auditor, AuditorReport, AuditReport, Verdict
from core.dask import SettingsDaskTaskRunner
from deployments.names import AUDIT_FLOW
from tasks.audit.logo import LogoPageResult, logo_pages_task
from tasks.audit.report import failed_file_report, file_report, publish_audit_report_task
from tasks.audit.tasks import (
    AuditTarget,
    LoadedPolicy,
    annotate_task,
    annotated_path,
    disclaimer_task,
    format_task,
    grammar_task,
    inspect_task,
    load_policy_task,
    logo_pages,
    logo_report,
    page_batches,
)
from tasks.progress import ProgressReporter
from tasks.runs import mark_dead_letter

STAGES = {"preparing": 1.0, "auditing": 8.0, "reporting": 1.0}
LOGO_PAGES_PER_TASK = 8
_SINGLE_TASK_AUDITORS = {
    Auditor.DISCLAIMER: disclaimer_task,
    Auditor.FORMAT: format_task,
    Auditor.GRAMMAR: grammar_task,
}


@dataclass
class _Audit:
    """One file's auditor futures while they run."""

    name: str
    target: AuditTarget
    started: float
    futures: dict[Auditor, PrefectFuture[AuditorReport]] = field(default_factory=dict)
    logo_batches: list[PrefectFuture[list[LogoPageResult]]] = field(default_factory=list)
    logo_done: float | None = None


@flow(
    name=AUDIT_FLOW,
    task_runner=SettingsDaskTaskRunner(),  # type: ignore[arg-type]
    persist_result=True,
    on_failure=[mark_dead_letter],
    on_crashed=[mark_dead_letter],
)
def audit_document(
    paths: list[str],
    policy: str | None = None,
    tenant: str = "default",
    names: dict[str, str] | None = None,
) -> AuditBatchReport:
    """Audits PDFs against a policy with four concurrent auditors; one report per file."""
    started = time.monotonic()
    progress = ProgressReporter(STAGES)
    progress.update("preparing", 0, len(paths), f"Loading policy, opening {len(paths)} file(s)")
    loaded = load_policy_task(policy)
    reports: list[AuditReport] = []
    audits: list[_Audit] = []
    for done, path in enumerate(paths, start=1):
        name = (names or {}).get(path, path)
        try:
            target = inspect_task(path)
        except Exception as exc:
            reports.append(failed_file_report(name, exc))
        else:
            audits.append(_submit(name, target, loaded, tenant))
        progress.update("preparing", done, len(paths), f"Opened {done}/{len(paths)} file(s)")
    reports.extend(_collect(audits, loaded, progress))
    report = AuditBatchReport(
        reports=sorted(reports, key=lambda r: r.file),
        policy=loaded.policy.name,
        seconds=round(time.monotonic() - started, 3),
    )
    publish_audit_report_task(report)
    failed = sum(1 for r in report.reports if r.verdict in (Verdict.FAILED, Verdict.ERROR))
    progress.finish(f"{len(report.reports)} file(s) audited, {failed} failed")
    return report


def _submit(name: str, target: AuditTarget, loaded: LoadedPolicy, tenant: str) -> _Audit:
    """Starts every auditor of one file on the task runner; logo pages go in batches."""
    audit = _Audit(name=name, target=target, started=time.monotonic())
    # Rendering and matching pages is the slowest auditor: its batches go to the queue first.
    pages = logo_pages(loaded.policy, target.page_count)
    audit.logo_batches = [
        logo_pages_task.submit(target.path, batch, loaded.policy, tenant)
        for batch in page_batches(pages, LOGO_PAGES_PER_TASK)
    ]
    for auditor, task in _SINGLE_TASK_AUDITORS.items():
        audit.futures[auditor] = task.submit(target, loaded.policy, loaded.key, tenant)
    return audit


def _collect(
    audits: Sequence[_Audit], loaded: LoadedPolicy, progress: ProgressReporter
) -> list[AuditReport]:
    """Waits for every auditor, reporting progress as each finishes; a failure is its own error."""
    owner: dict[Any, tuple[_Audit, Auditor]] = {}
    futures: list[PrefectFuture[Any]] = []
    for audit in audits:
        running: list[tuple[Auditor, PrefectFuture[Any]]] = [
            *audit.futures.items(),
            *((Auditor.LOGO, batch) for batch in audit.logo_batches),
        ]
        for auditor, future in running:
            owner[future.task_run_id] = (audit, auditor)
            futures.append(future)
    total = len(futures)
    progress.update("auditing", 0, total, f"Running {total} auditor task(s)")
    for done, future in enumerate(as_completed(futures), start=1):
        audit, auditor = owner[future.task_run_id]
        if auditor is Auditor.LOGO:
            audit.logo_done = time.monotonic()
        progress.update("auditing", done, total, f"{auditor.value} finished for {audit.name}")
    progress.update("reporting", 0, len(audits), "Writing reports")
    reports = []
    for done, audit in enumerate(audits, start=1):
        auditors = [_outcome(auditor, future) for auditor, future in audit.futures.items()]
        auditors.append(_logo_outcome(audit, loaded))
        report = file_report(
            audit.name,
            content_hash=audit.target.content_hash,
            language=audit.target.language,
            page_count=audit.target.page_count,
            auditors=auditors,
            seconds=time.monotonic() - audit.started,
        )
        findings = [f for a in report.auditors for f in a.findings]
        out = annotated_path(audit.target, audit.name, loaded.key)
        try:
            report.annotated_pdf = annotate_task(audit.target.path, findings, str(out))
        except Exception as exc:  # the report stands without its annotated copy
            get_run_logger().warning("no annotated PDF for %s: %s", audit.name, exc)
        reports.append(report)
        progress.update("reporting", done, len(audits), f"Reported {audit.name}")
    return reports


def _outcome(auditor: Auditor, future: PrefectFuture[AuditorReport]) -> AuditorReport:
    """The auditor's report, or an error report saying why it could not run."""
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, AuditorReport):
        return outcome
    return _error_report(auditor, outcome)


def _logo_outcome(audit: _Audit, loaded: LoadedPolicy) -> AuditorReport:
    """The logo auditor's report over all its page batches, or the first batch's error."""
    results: list[LogoPageResult] = []
    for future in audit.logo_batches:
        outcome = future.result(raise_on_failure=False)
        if not isinstance(outcome, list):
            return _error_report(Auditor.LOGO, outcome)
        results.extend(outcome)
    try:
        seconds = (audit.logo_done or audit.started) - audit.started
        return logo_report(results, audit.target, loaded.policy, seconds)
    except Exception as exc:
        return _error_report(Auditor.LOGO, exc)


def _error_report(auditor: Auditor, error: object) -> AuditorReport:
    text = str(error) or type(error).__name__
    reason = getattr(error, "reason", None)
    return AuditorReport(
        auditor=auditor,
        verdict=Verdict.ERROR,
        error=f"{getattr(reason, 'value', reason)}: {text}" if reason is not None else text,
    )


if __name__ != "flows.audit":
    # Prefect loads the entrypoint "flows/audit.py:audit_document" as a top-level module named
    # "audit", which Dask workers cannot import when they unpickle the run context; hand out
    # the flow of the importable package module instead.
    import flows.audit as _importable

    audit_document = _importable.audit_document
