"""serve() entry of the embedded stack: every deployment in one process."""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from core.settings import get_settings
from deployments.names import INGEST_DEPLOYMENT
from flows.ingest import ingest_documents


def runner_deployments() -> list[RunnerDeployment]:
    """Every deployment that exists, as served by the embedded stack."""
    ingest = ingest_documents.to_deployment(
        name=INGEST_DEPLOYMENT,
        tags=["octavius"],
        description="Parse, chunk, embed and index documents into the knowledge base.",
    )
    assert isinstance(ingest, RunnerDeployment)
    return [ingest]


def main() -> None:
    """Serves every deployment until interrupted."""
    # Without a limit serve() starts every scheduled run at once: a burst of uploads would
    # start one Python process per run on a two-core machine.
    serve(
        *runner_deployments(),
        print_starting_message=False,
        limit=get_settings().flow_run_limit,
    )


if __name__ == "__main__":
    main()
