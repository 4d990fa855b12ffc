"""serve() entry of the embedded stack: every deployment in one process."""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from core.settings import get_settings
from core.storage import apply_result_storage
from deployments.names import (
    AUDIT_DEPLOYMENT,
    CLEANUP_DEPLOYMENT,
    CLEANUP_INTERVAL_S,
    INGEST_DEPLOYMENT,
    REINDEX_CRON,
    REINDEX_DEPLOYMENT,
    RESEARCH_DEPLOYMENT,
)
from flows.audit import audit_document
from flows.cleanup import cleanup_resources
from flows.ingest import ingest_documents
from flows.reindex import reindex_collection
from flows.research import deep_research


def runner_deployments() -> list[RunnerDeployment]:
    """Every deployment that exists, as served by the embedded stack."""
    ingest = ingest_documents.to_deployment(
        name=INGEST_DEPLOYMENT,
        tags=["octavius"],
        description="Parse, chunk, embed and index documents into the knowledge base.",
    )
    assert isinstance(ingest, RunnerDeployment)
    audit = audit_document.to_deployment(
        name=AUDIT_DEPLOYMENT,
        tags=["octavius"],
        description="Audit PDFs: disclaimer, format, grammar and logo auditors in parallel.",
    )
    assert isinstance(audit, RunnerDeployment)
    research = deep_research.to_deployment(
        name=RESEARCH_DEPLOYMENT,
        tags=["octavius"],
        description="Answer a question from the knowledge base with a cited report.",
    )
    assert isinstance(research, RunnerDeployment)
    reindex = reindex_collection.to_deployment(
        name=REINDEX_DEPLOYMENT,
        tags=["octavius", "operations"],
        description="Rebuild the collection into a new version when the model or chunking "
        "changed, check it and swap the alias.",
        cron=REINDEX_CRON,
        concurrency_limit=1,
    )
    assert isinstance(reindex, RunnerDeployment)
    cleanup = cleanup_resources.to_deployment(
        name=CLEANUP_DEPLOYMENT,
        tags=["octavius", "operations"],
        description="Remove old uploads, results, orphan points, expired collection versions "
        "and stale rate limits.",
        interval=CLEANUP_INTERVAL_S,
        concurrency_limit=1,
    )
    assert isinstance(cleanup, RunnerDeployment)
    return [ingest, audit, research, reindex, cleanup]


def main() -> None:
    """Serves every deployment until interrupted."""
    apply_result_storage(get_settings())
    # Without a limit serve() starts every scheduled run at once: a burst of uploads would
    # start one Python process per run on a two-core machine.
    serve(
        *runner_deployments(),
        print_starting_message=False,
        limit=get_settings().flow_run_limit,
    )


if __name__ == "__main__":
    main()
