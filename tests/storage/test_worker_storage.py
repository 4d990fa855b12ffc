"""A plain `prefect worker` with OCTAVIUS_STORAGE_URL: its flow runs keep results in the bucket."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.storage import RESULTS_BLOCK
from deployments.names import INGEST
from deployments.stack import wait_healthy
from tests.deployments.test_workers import BIN, REPO, _environment, _run_and_wait
from tests.processes import free_port, process_group
from tests.storage.conftest import bucket_keys, storage_options


@pytest.mark.timeout(900)
def test_storage_prefect_worker_flow_run_persists_to_the_bucket(
    tmp_path: Path, storage_url: str, s3_endpoint: str
) -> None:
    import s3fs

    port = free_port()
    prefect_api_url = f"http://127.0.0.1:{port}/api"
    env = _environment(tmp_path, prefect_api_url)
    # Deployed without any storage setting: only the worker's environment names the bucket.
    worker_env = env | {
        "OCTAVIUS_STORAGE_URL": storage_url,
        "OCTAVIUS_STORAGE_OPTIONS": json.dumps(storage_options(s3_endpoint)),
    }
    upload = f"{storage_url}/uploads/worker/req1/notas.md"
    fs = s3fs.S3FileSystem(**storage_options(s3_endpoint), skip_instance_cache=True)
    fs.pipe(upload.removeprefix("s3://"), b"# Copias\n\nRotate the tapes every week, weasel.\n")
    server_args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1"]
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            process_group([*server_args, "--port", str(port)], env, tmp_path / "server.log")
        )
        wait_healthy(f"{prefect_api_url}/health", 180, lambda: server.poll() is None)
        subprocess.run(
            [str(BIN / "prefect"), "work-pool", "create", "octavius", "--type", "process"],
            cwd=REPO, env=env, check=True, capture_output=True,
        )  # fmt: skip
        deployed = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
            cwd=REPO, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        stack.enter_context(
            process_group(
                [str(BIN / "prefect"), "worker", "start", "--pool", "octavius"],
                worker_env,
                tmp_path / "worker.log",
            )
        )
        parameters = {"paths": [upload], "tenant": "worker", "names": {upload: "notas.md"}}
        final = json.loads(_run_and_wait(env, {INGEST: parameters}, 600))
        state, run_count, run_id = final[INGEST]
        worker_log = (tmp_path / "worker.log").read_text(errors="replace")
        assert state == "COMPLETED", worker_log[-4000:]
        assert run_count == 1
        record = _result_record(env, run_id)
    assert record["block_name"] == RESULTS_BLOCK
    assert record["block_type"] == "remote-file-system"
    assert record["basepath"] == f"{storage_url}/results"
    assert record["documents"] == [["notas.md", "indexed"]]
    keys = bucket_keys(storage_url, s3_endpoint, "results")
    assert any(key.endswith("/" + record["storage_key"].rsplit("/", 1)[-1]) for key in keys)
    assert not (tmp_path / "home" / "results").exists()


def _result_record(env: dict[str, str], run_id: str) -> dict[str, Any]:
    """The run's result metadata, its block, and the result read back, in another process."""
    script = f"""
import json
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    run = client.read_flow_run({run_id!r})
    block = client.read_block_document(run.state.data.storage_block_id)
report = run.state.result()
print(json.dumps({{
    "storage_key": run.state.data.storage_key,
    "block_name": block.name,
    "block_type": block.block_type.slug,
    "basepath": block.data["basepath"],
    "documents": [[d.source, d.status.value] for d in report.documents],
}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
