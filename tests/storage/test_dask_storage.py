"""Parsing on Dask worker processes that fetch uploads from the bucket and cache results there."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import get_settings
from tests.storage.conftest import bucket_keys, storage_options


@pytest.fixture(scope="module")
def storage_cluster(prefect_harness: None, storage_env: dict[str, str]) -> Iterator[str]:
    """A one-process Dask cluster started with the storage settings in its environment."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
    ) as cluster:
        yield str(cluster.scheduler_address)


def _parse_runs(flow_run_id: Any) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as prefect:
        task_runs = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [t for t in task_runs if t.name.startswith("parse ")]


def test_storage_dask_workers_parse_from_bucket_and_share_the_cache(
    storage_cluster: str,
    storage_url: str,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import s3fs
    from prefect import get_client
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from core.storage import apply_result_storage
    from flows.ingest import ingest_documents

    upload = f"{storage_url}/uploads/dask/req/guia.md"
    fs = s3fs.S3FileSystem(**storage_options(s3_endpoint), skip_instance_cache=True)
    fs.pipe(upload.removeprefix("s3://"), b"# Guia\n\nThe ocelot registry rotates its keys.\n")
    monkeypatch.setenv("OCTAVIUS_DASK_ADDRESS", storage_cluster)
    states = []
    try:
        for run in (1, 2):
            # Each run has its own store and local result folder: only the bucket is shared.
            monkeypatch.setenv("OCTAVIUS_HOME", str(tmp_path / f"home-{run}"))
            get_settings.cache_clear()
            assert apply_result_storage() is not None
            with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / f"local-{run}"}):
                states.append(
                    ingest_documents(
                        paths=[upload],
                        tenant="dask",
                        names={upload: "guia.md"},
                        return_state=True,
                    )
                )
    finally:
        get_settings.cache_clear()
        with get_client(sync_client=True) as client:
            client.clear_server_default_result_storage()
    reports = [state.result() for state in states]
    assert [[(d.source, d.status.value) for d in r.documents] for r in reports] == [
        [("guia.md", "indexed")],
        [("guia.md", "indexed")],
    ]
    first, second = (_parse_runs(state.state_details.flow_run_id) for state in states)
    assert [t.state.name for t in first] == ["Completed"]
    assert [t.state.name for t in second] == ["Cached"]
    key = first[0].state.data.storage_key.rsplit("/", 1)[-1]
    assert second[0].state.data.storage_key.rsplit("/", 1)[-1] == key
    assert any(
        k.endswith(f"/results/{key}") for k in bucket_keys(storage_url, s3_endpoint, "results")
    )
    assert not (tmp_path / "local-1").exists()


def test_storage_cli_applies_the_results_block_before_running_flows(
    prefect_harness: None, storage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import get_client
    from prefect.filesystems import RemoteFileSystem

    from core.cli import _prepare_environment
    from core.storage import RESULTS_BLOCK

    for key, value in storage_env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    saved = dict(os.environ)  # the CLI sets a few defaults for its own process
    try:
        with get_client(sync_client=True) as client:
            client.clear_server_default_result_storage()
            _prepare_environment()  # a command that runs no flow leaves Prefect alone
            assert (
                client.read_server_default_result_storage().default_result_storage_block_id is None
            )
            _prepare_environment(runs_flows=True)
            applied = client.read_server_default_result_storage().default_result_storage_block_id
            block = client.read_block_document(applied)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        with get_client(sync_client=True) as client:
            client.clear_server_default_result_storage()
    assert block.name == RESULTS_BLOCK
    assert block.data["basepath"] == f"{storage_env['OCTAVIUS_STORAGE_URL']}/results"
    assert isinstance(RemoteFileSystem.load(RESULTS_BLOCK), RemoteFileSystem)
