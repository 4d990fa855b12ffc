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
        assert f"{flow.name}/{deployment['name']}" in {names.INGEST}


def test_prefect_yaml_uses_the_octavius_pool() -> None:
    assert {d["work_pool"]["name"] for d in _declared()} == {names.WORK_POOL}


def test_served_deployments_match_prefect_yaml() -> None:
    served = {(d.flow_name, d.name) for d in runner_deployments()}
    declared = set()
    for deployment in _declared():
        flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
        declared.add((flow.name, deployment["name"]))
    assert served == declared == {(names.INGEST_FLOW, names.INGEST_DEPLOYMENT)}
