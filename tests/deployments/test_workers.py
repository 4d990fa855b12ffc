"""`prefect deploy --all` against a real server, two process workers, one run of each deployment."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deployments.names import AUDIT, CLEANUP, INGEST, REINDEX, RESEARCH
from deployments.stack import wait_healthy
from tests.docgen import make_pdf
from tests.processes import free_port, process_group

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _environment(tmp_path: Path, prefect_api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OCTAVIUS_"))}
    home = tmp_path / "home"
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_API_URL": prefect_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Scheduled reindex and cleanup runs would race the ones this test starts.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_LOCAL_STORAGE_PATH": str(home / "results"),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "OCTAVIUS_HOME": str(home),
            "OCTAVIUS_PROJECT_DIR": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PATH": f"{BIN}:{env.get('PATH', '')}",
        }
    )
    return env


def _run_and_wait(env: dict[str, str], runs: dict[str, dict[str, Any]], timeout_s: int) -> str:
    """Starts one run per deployment through Prefect and waits for all; their final states."""
    script = f"""
import json, sys, time
from prefect.deployments import run_deployment
runs = {runs!r}
started = {{
    name: run_deployment(name, parameters=params, timeout=0) for name, params in runs.items()
}}
from prefect.client.orchestration import get_client
deadline = time.monotonic() + {timeout_s}
with get_client(sync_client=True) as client:
    while True:
        states = {{n: client.read_flow_run(r.id) for n, r in started.items()}}
        final = {{n: (f.state.type.value, f.run_count, str(f.id)) for n, f in states.items()}}
        if all(f.state.is_final() for f in states.values()) or time.monotonic() > deadline:
            print(json.dumps(final))
            sys.exit(0)
        time.sleep(2)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s + 120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(1500)
def test_prefect_deploy_all_with_two_workers_runs_every_deployment(tmp_path: Path) -> None:
    import json

    port = free_port()
    prefect_api_url = f"http://127.0.0.1:{port}/api"
    env = _environment(tmp_path, prefect_api_url)
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "backups.md").write_text(
        "# Backups\n\nRotate the backup tapes every week and keep four generations offline.\n",
        encoding="utf-8",
    )
    pdf = make_pdf(tmp_path / "informe.pdf", ["Informe trimestral de copias de seguridad."])
    runs = {
        INGEST: {"paths": [str(documents)], "tenant": "workers"},
        AUDIT: {"paths": [str(pdf)], "tenant": "workers"},
        RESEARCH: {"query": "How often are backup tapes rotated?", "tenant": "workers"},
        REINDEX: {"force": False},
        CLEANUP: {"dry_run": True},
    }
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
        for name in runs:
            assert name in deployed.stdout, (name, deployed.stdout)
        for n in (1, 2):
            stack.enter_context(
                process_group(
                    [str(BIN / "prefect"), "worker", "start", "--pool", "octavius",
                     "--name", f"worker-{n}"],
                    env,
                    tmp_path / f"worker-{n}.log",
                )
            )  # fmt: skip
        # Ingestion first, so research has a document to cite; the rest together.
        first = json.loads(_run_and_wait(env, {INGEST: runs.pop(INGEST)}, 600))
        rest = json.loads(_run_and_wait(env, runs, 900))
    states = first | rest
    assert {name: state[0] for name, state in states.items()} == dict.fromkeys(
        [INGEST, AUDIT, RESEARCH, REINDEX, CLEANUP], "COMPLETED"
    ), states
    assert all(state[1] == 1 for state in states.values()), states  # each ran once
    workers = {n: (tmp_path / f"worker-{n}.log").read_text(errors="replace") for n in (1, 2)}
    assert all("octavius" in log for log in workers.values()), workers
