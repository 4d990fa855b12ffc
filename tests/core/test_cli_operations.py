"""The operations commands in-process against Prefect's harness: reindex, cleanup, retry."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.deployments.runner import RunnerDeployment
from prefect.states import Failed
from typer.testing import CliRunner

from core.cli import app
from tasks.runs import DEAD_LETTER_TAG


@flow(name="cli-retry-target")
def retry_target() -> None:
    """A deployed flow whose run the test fails and re-queues."""


def test_cli_reindex_on_empty_store_skips(prefect_harness: None, octavius_home: Path) -> None:
    result = CliRunner().invoke(app, ["reindex", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["action"], report["documents"]) == ("skipped", 0)


def test_cli_reindex_rollback_without_previous_fails(
    prefect_harness: None, octavius_home: Path
) -> None:
    result = CliRunner().invoke(app, ["reindex", "--rollback"])
    assert result.exit_code == 1
    assert "no previous version" in result.output


def test_cli_cleanup_dry_run_json(prefect_harness: None, octavius_home: Path) -> None:
    result = CliRunner().invoke(app, ["cleanup", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert report["errors"] == []


def test_cli_retry_requeues_dead_letter(prefect_harness: None, octavius_home: Path) -> None:
    deployment = retry_target.to_deployment(name="cli-test")
    assert isinstance(deployment, RunnerDeployment)
    deployment_id = deployment.apply()

    async def failed_run() -> UUID:
        async with get_client() as client:
            run = await client.create_flow_run_from_deployment(
                deployment_id, tags=[DEAD_LETTER_TAG, "kind:test"]
            )
            await client.set_flow_run_state(run.id, Failed(message="boom"), force=True)
            return run.id

    async def read(run_id: UUID) -> tuple[str, list[str]]:
        async with get_client() as client:
            run = await client.read_flow_run(run_id)
            assert run.state is not None
            return run.state.type.value, run.tags

    run_id = asyncio.run(failed_run())
    result = CliRunner().invoke(app, ["retry", str(run_id), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "SCHEDULED"
    state, tags = asyncio.run(read(run_id))
    assert state == "SCHEDULED"
    assert DEAD_LETTER_TAG not in tags and "kind:test" in tags
    # a task that is not failed cannot be retried
    again = CliRunner().invoke(app, ["retry", str(run_id)])
    assert again.exit_code == 1
    assert "cannot be retried" in again.output
