"""Deployment names and prefect.yaml stay in step with the flows."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

from deployments import names
from deployments.serve import runner_deployments

REPO = Path(__file__).resolve().parents[2]


def _declared() -> list[dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def test_every_prefect_yaml_entrypoint_loads_its_flow(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    for deployment in _declared():
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        # The importable module's flow, so Dask workers can unpickle the run context.
        assert flow.fn.__module__.startswith("flows."), deployment["entrypoint"]
        assert f"{flow.name}/{deployment['name']}" in {
            names.INGEST,
            names.AUDIT,
            names.RESEARCH,
            names.REINDEX,
            names.CLEANUP,
        }


def test_prefect_yaml_uses_the_octavius_pool() -> None:
    assert {d["work_pool"]["name"] for d in _declared()} == {names.WORK_POOL}


def test_served_deployments_match_prefect_yaml() -> None:
    served = {(d.flow_name, d.name) for d in runner_deployments()}
    declared = set()
    for deployment in _declared():
        flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
        declared.add((flow.name, deployment["name"]))
    assert (
        served
        == declared
        == {
            (names.INGEST_FLOW, names.INGEST_DEPLOYMENT),
            (names.AUDIT_FLOW, names.AUDIT_DEPLOYMENT),
            (names.RESEARCH_FLOW, names.RESEARCH_DEPLOYMENT),
            (names.REINDEX_FLOW, names.REINDEX_DEPLOYMENT),
            (names.CLEANUP_FLOW, names.CLEANUP_DEPLOYMENT),
        }
    )


def test_operations_schedules_match_names() -> None:
    by_name = {d["name"]: d for d in _declared()}
    assert by_name[names.REINDEX_DEPLOYMENT]["schedules"][0]["cron"] == names.REINDEX_CRON
    assert by_name[names.CLEANUP_DEPLOYMENT]["schedules"][0]["interval"] == (
        names.CLEANUP_INTERVAL_S
    )
    served = {d.name: d for d in runner_deployments()}
    assert served[names.REINDEX_DEPLOYMENT].schedules[0].schedule.cron == names.REINDEX_CRON
    assert served[names.CLEANUP_DEPLOYMENT].schedules[0].schedule.interval.total_seconds() == (
        names.CLEANUP_INTERVAL_S
    )
