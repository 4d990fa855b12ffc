"""Thin Prefect tasks around the auditors: cached on file content, policy and code version."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.context import TaskRunContext
from pydantic import BaseModel, Field

from core.audit_models import (
    Auditor,
    AuditorReport,
    AuditPolicy,
    Finding,
    auditor_verdict,
)
from core.models import FailureReason
from core.settings import get_settings
from core.storage import is_url, local_file, size_of
from tasks.audit.disclaimer import audit_disclaimers
from tasks.audit.format import audit_format
from tasks.audit.grammar import audit_grammar
from tasks.audit.layout import inspect_pdf, read_paragraphs
from tasks.audit.logo import LogoPageResult, logo_findings
from tasks.audit.policy import load_policy, policy_hash
from tasks.audit.report import annotate_pdf
from tasks.parsers import ParseError
from tasks.parsing import file_sha256

# Bump when a change in auditing code must re-audit unchanged files.
AUDIT_VERSION = "1"

logger = logging.getLogger(__name__)


class AuditTarget(BaseModel):
    """A PDF that opened cleanly, as every auditor task receives it (a reference, no pages)."""

    path: str
    content_hash: str
    language: Literal["es", "en", "other"]
    page_count: int = Field(ge=1)


class LoadedPolicy(BaseModel):
    """A validated policy with its content hash (part of every cache key)."""

    policy: AuditPolicy
    key: str
    source: str


def load_policy_file(path: str | None) -> LoadedPolicy:
    """The policy at `path` (the shipped default when None) and its hash; raises PolicyError."""
    if path is None:
        policy = load_policy(None)
    else:
        with local_file(path) as local:
            policy = load_policy(local)
    return LoadedPolicy(policy=policy, key=policy_hash(policy), source=path or "default")


def inspect_target(path: str) -> AuditTarget:
    """The file's content hash, page count and language; ParseError when it cannot be audited."""
    settings = get_settings()
    try:
        size = size_of(path)
    except OSError:
        size = 0
    if size > settings.max_file_mb * 2**20:
        raise ParseError(
            FailureReason.TOO_LARGE,
            f"file is {size / 2**20:.1f} MiB (limit {settings.max_file_mb:.1f} MiB)",
        )
    # A stored upload keeps its URL as the path; each task fetches its own local copy.
    with local_file(path) as pdf:
        info = inspect_pdf(pdf, max_pages=settings.max_pages)
        content_hash = file_sha256(pdf)
    return AuditTarget(
        path=path if is_url(path) else str(Path(path)),
        content_hash=content_hash,
        language=info.language,
        page_count=info.page_count,
    )


def _auditor_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key: task, tenant, file content, policy content and code version."""
    target: AuditTarget = parameters["target"]
    key = (
        f"audit|{context.task.name}|{parameters['tenant']}|{target.content_hash}|"
        f"{parameters['policy_key']}|{AUDIT_VERSION}"
    )
    return hashlib.sha256(key.encode()).hexdigest()


_AUDITOR_CACHE = CacheKeyFnPolicy(cache_key_fn=_auditor_key)


@contextmanager
def _own_progress(name: str) -> Iterator[Callable[[float, str], None]]:
    """A progress artifact of the running task: 0 % at start, 100 % when it returns."""
    artifact: UUID | None = None
    try:
        created = create_progress_artifact(0.0, description=f"{name}: starting")
        artifact = created if isinstance(created, UUID) else None
    except Exception:  # progress must never fail an audit
        logger.debug("no progress artifact for %s", name, exc_info=True)

    def update(percent: float, message: str) -> None:
        if artifact is None:
            return
        try:
            update_progress_artifact(artifact, percent, description=f"{name}: {message}")
        except Exception:  # progress must never fail an audit
            logger.debug("progress update of %s failed", name, exc_info=True)

    yield update
    update(100.0, "done")


def _message_language(target: AuditTarget) -> str:
    """The language findings are worded in: the document's, English when it is neither."""
    return target.language if target.language in ("es", "en") else "en"


def _report(auditor: Auditor, findings: list[Finding], started: float) -> AuditorReport:
    return AuditorReport(
        auditor=auditor,
        verdict=auditor_verdict(findings),
        findings=findings,
        seconds=round(time.monotonic() - started, 3),
    )


@task(
    name="audit-disclaimer",
    cache_policy=_AUDITOR_CACHE,
    task_run_name="disclaimer {target.path}",
)
def disclaimer_task(
    target: AuditTarget, policy: AuditPolicy, policy_key: str, tenant: str
) -> AuditorReport:
    """Checks the required disclaimers; cached on content, policy and code version."""
    started = time.monotonic()
    with _own_progress("disclaimer") as progress:
        with local_file(target.path) as pdf:
            paragraphs = read_paragraphs(pdf)
        progress(50.0, f"read {len(paragraphs)} paragraphs")
        findings = audit_disclaimers(paragraphs, policy.disclaimers, target.language)
    return _report(Auditor.DISCLAIMER, findings, started)


@task(
    name="audit-grammar",
    cache_policy=_AUDITOR_CACHE,
    task_run_name="grammar {target.path}",
)
def grammar_task(
    target: AuditTarget, policy: AuditPolicy, policy_key: str, tenant: str
) -> AuditorReport:
    """Checks spelling, repeated words, spacing and punctuation; cached like every auditor."""
    started = time.monotonic()
    with _own_progress("grammar") as progress:
        with local_file(target.path) as pdf:
            paragraphs = read_paragraphs(pdf)
        progress(30.0, f"read {len(paragraphs)} paragraphs")
        findings = audit_grammar(paragraphs, policy.spelling)
    return _report(Auditor.GRAMMAR, findings, started)


@task(
    name="audit-format",
    cache_policy=_AUDITOR_CACHE,
    task_run_name="format {target.path}",
)
def format_task(
    target: AuditTarget, policy: AuditPolicy, policy_key: str, tenant: str
) -> AuditorReport:
    """Checks page geometry, margins, fonts, page numbers and images; cached like every auditor."""
    started = time.monotonic()
    with _own_progress("format"), local_file(target.path) as pdf:
        findings = audit_format(pdf, policy, language=_message_language(target))
    return _report(Auditor.FORMAT, findings, started)


def logo_pages(policy: AuditPolicy, page_count: int) -> list[int]:
    """The pages the logo rules look at (all pages unless every rule only wants the first)."""
    if not policy.logos:
        return []
    if all(rule.pages == "first" for rule in policy.logos):
        return [1]
    return list(range(1, page_count + 1))


def page_batches(pages: list[int], size: int) -> list[list[int]]:
    """Pages cut into consecutive batches of at most `size`."""
    return [pages[i : i + size] for i in range(0, len(pages), size)]


def logo_report(
    results: list[LogoPageResult], target: AuditTarget, policy: AuditPolicy, seconds: float
) -> AuditorReport:
    """The logo auditor's report from the per-page results of every batch."""
    findings = (
        logo_findings(results, policy, target.page_count, language=_message_language(target))
        if policy.logos
        else []
    )
    return AuditorReport(
        auditor=Auditor.LOGO,
        verdict=auditor_verdict(findings),
        findings=findings,
        seconds=round(seconds, 3),
    )


def annotated_path(target: AuditTarget, name: str, policy_key: str) -> Path:
    """Where the annotated copy of a file goes: under OCTAVIUS_HOME, named by content."""
    stem = Path(name).stem[:60] or "document"
    folder = get_settings().home / "results" / "audits"
    return folder / f"{stem}-{target.content_hash[:12]}-{policy_key[:8]}.annotated.pdf"


@task(name="load-audit-policy", cache_policy=NO_CACHE)
def load_policy_task(path: str | None) -> LoadedPolicy:
    """Loads and validates the policy; a policy with errors fails the run with their list."""
    return load_policy_file(path)


@task(name="inspect-pdf", cache_policy=NO_CACHE, task_run_name="inspect {path}")
def inspect_task(path: str) -> AuditTarget:
    """Opens the PDF and hashes it; ParseError (encrypted, corrupt, empty, image-only) fails it."""
    return inspect_target(path)


@task(name="annotate-pdf", cache_policy=NO_CACHE, task_run_name="annotate {out}")
def annotate_task(path: str, findings: list[Finding], out: str) -> str:
    """Writes the PDF with the findings drawn on its pages; returns its path."""
    with local_file(path) as pdf:
        return str(annotate_pdf(pdf, findings, Path(out)))
