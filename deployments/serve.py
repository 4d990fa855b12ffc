"""serve() entry of the embedded stack: every deployment in one process."""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

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
    serve(*runner_deployments(), print_starting_message=False)


if __name__ == "__main__":
    main()
