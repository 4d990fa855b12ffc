"""The ingestion report: typed result and markdown artifact."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.models import (
    ChunkedDocument,
    DocumentReport,
    DocumentStatus,
    FailureReason,
    IngestReport,
    StoredDocument,
)


def indexed_report(document: ChunkedDocument) -> DocumentReport:
    """Report line of a document written to the store."""
    return DocumentReport(
        source=document.source,
        doc_id=document.doc_id,
        status=DocumentStatus.INDEXED,
        title=document.title,
        language=document.language,
        pages=document.page_count,
        chunks=len(document.chunks),
    )


def failed_report(source: str, doc_id: str, error: BaseException) -> DocumentReport:
    """Report line of a document that could not be parsed, with the reason."""
    reason = getattr(error, "reason", None)
    return DocumentReport(
        source=source,
        doc_id=doc_id,
        status=DocumentStatus.FAILED,
        reason=reason if isinstance(reason, FailureReason) else FailureReason.CORRUPT,
        error=str(error) or type(error).__name__,
    )


def removed_report(document: StoredDocument) -> DocumentReport:
    """Report line of a document pruned from the store."""
    return DocumentReport(
        source=document.source,
        doc_id=document.doc_id,
        status=DocumentStatus.REMOVED,
        chunks=document.chunk_count,
    )


def build_report(
    documents: Sequence[DocumentReport], *, tenant: str, collection: str, seconds: float
) -> IngestReport:
    """Totals over the per-document lines."""

    def count(status: DocumentStatus) -> int:
        return sum(1 for d in documents if d.status is status)

    return IngestReport(
        tenant=tenant,
        collection=collection,
        documents=sorted(documents, key=lambda d: d.source),
        indexed=count(DocumentStatus.INDEXED),
        unchanged=count(DocumentStatus.UNCHANGED),
        failed=count(DocumentStatus.FAILED),
        removed=count(DocumentStatus.REMOVED),
        chunks_embedded=sum(d.chunks for d in documents if d.status is DocumentStatus.INDEXED),
        seconds=round(seconds, 3),
    )


def report_markdown(report: IngestReport) -> str:
    """The report as a markdown table for the Prefect UI."""
    lines = [
        f"# Ingestion into `{report.collection}` (tenant `{report.tenant}`)",
        "",
        f"{report.indexed} indexed, {report.unchanged} unchanged, {report.failed} failed, "
        f"{report.removed} removed; {report.chunks_embedded} chunks embedded in "
        f"{report.seconds:.1f} s.",
        "",
        "| document | status | language | pages | chunks | reason |",
        "|---|---|---|---|---|---|",
    ]
    for doc in report.documents:
        reason = f"{doc.reason.value}: {doc.error}" if doc.reason else ""
        cells = [
            doc.source,
            doc.status.value,
            doc.language or "",
            str(doc.pages or ""),
            str(doc.chunks),
            reason,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report_task(report: IngestReport) -> None:
    """Attaches the report to the flow run as a markdown artifact."""
    create_markdown_artifact(
        markdown=report_markdown(report),
        key="ingest-report",
        description="Per-document ingestion report",
    )
