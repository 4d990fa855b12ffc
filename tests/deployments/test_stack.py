"""The embedded stack end to end: `octavius up`, upload, status, CLI ingest and search, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.docgen import make_pdf
from tests.processes import alive, descendants, free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    api: str
    env: dict[str, str]
    home: Path
    children: set[int]


def _stack_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OCTAVIUS_"))}
    env.update(
        {
            "OCTAVIUS_HOME": str(home),
            "OCTAVIUS_API_PORT": str(free_port()),
            "OCTAVIUS_PREFECT_PORT": str(free_port()),
            # Two API processes on one port, as a busier machine runs them.
            "OCTAVIUS_API_WORKERS": "2",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """`octavius up` in a fresh home, as a newcomer starts it."""
    home = tmp_path_factory.mktemp("stack") / "home"
    env = _stack_env(home)
    log = (home.parent / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "up"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    api = f"http://127.0.0.1:{env['OCTAVIUS_API_PORT']}"
    deadline = time.monotonic() + 240
    while not (home / "stack.json").exists():
        assert process.poll() is None, (home.parent / "up.log").read_text()
        assert time.monotonic() < deadline, "stack did not come up in 240 s"
        time.sleep(1)
    running = RunningStack(process, api, env, home, descendants(process.pid))
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_final(client: httpx.Client, status_url: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(status_url).json()
        if body["state"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return body
        time.sleep(1)
    raise AssertionError(f"task not final after {timeout_s} s: {body}")


def test_stack_ready_and_prints_urls(stack: RunningStack) -> None:
    info = json.loads((stack.home / "stack.json").read_text())
    assert info["api_url"] == stack.api
    ready = httpx.get(f"{stack.api}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"prefect": "ok", "qdrant": "ok"}
    assert httpx.get(f"{info['prefect_api_url']}/health", timeout=10).status_code == 200


def test_stack_upload_then_status_then_search(stack: RunningStack, tmp_path: Path) -> None:
    pdf = tmp_path / "informe.pdf"
    make_pdf(
        pdf,
        [
            ["# Correo", "El servidor de correo Postfix se configura en el archivo main.cf."],
            ["# Backups", "The backup rotation keeps seven daily snapshots of the database."],
        ],
        title="Informe de operaciones",
    )
    token = json.loads((stack.home / "stack.json").read_text())["api_token"]
    assert token, "octavius up should hand out a local API token"
    assert stack.home.joinpath("api-tokens.json").stat().st_mode & 0o077 == 0
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{stack.api}/api/search", params={"q": "x"}).status_code == 401
    with httpx.Client(base_url=stack.api, timeout=30, headers=headers) as client:
        with pdf.open("rb") as handle:
            response = client.post(
                "/api/documents/upload",
                files=[("files", ("informe.pdf", handle, "application/pdf"))],
            )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert response.headers["location"] == accepted["status_url"]
        final = _wait_final(client, accepted["status_url"])
        assert final["state"] == "COMPLETED", final
        assert final["kind"] == "ingest"
        assert final["progress"]["percent"] == 100.0
        [document] = final["result"]["documents"]
        assert document["source"] == "informe.pdf"
        assert (document["status"], document["pages"]) == ("indexed", 2)
        status = subprocess.run(
            [sys.executable, "-m", "core.cli", "status", accepted["task_id"], "--json"],
            cwd=REPO,
            env=stack.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert status.returncode == 0, status.stderr.decode()[-3000:]
        assert json.loads(status.stdout)["result"] == final["result"]
        hits = client.get("/api/search", params={"q": "¿dónde se configura Postfix?", "k": 3})
        assert hits.status_code == 200
        top = hits.json()["hits"][0]
        assert "Postfix" in top["text"]
        assert (top["document"], top["page"]) == ("informe.pdf", 1)


def test_stack_cli_ingest_and_search_use_the_stack(stack: RunningStack, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.md").write_text(
        "# Kernel tuning\n\nSet vm.swappiness to 10 in /etc/sysctl.conf to reduce swapping.\n"
    )
    ingest = subprocess.run(
        [sys.executable, "-m", "core.cli", "ingest", str(folder), "--json"],
        cwd=REPO,
        env=stack.env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert ingest.returncode == 0, ingest.stderr.decode()[-3000:]
    report = json.loads(ingest.stdout)
    assert [d["status"] for d in report["documents"]] == ["indexed"]
    search = subprocess.run(
        [sys.executable, "-m", "core.cli", "search", "how to reduce swapping", "-k", "2", "--json"],
        cwd=REPO,
        env=stack.env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert search.returncode == 0, search.stderr.decode()[-3000:]
    hits = json.loads(search.stdout)["hits"]
    assert "vm.swappiness" in hits[0]["text"]
    # The run is recorded by the stack's Prefect server, like any other run.
    prefect_api = json.loads((stack.home / "stack.json").read_text())["prefect_api_url"]
    # (The API's reserved runs, created ahead of demand, are there too: ask for completed ones.)
    runs = httpx.post(
        f"{prefect_api}/flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 50},
        timeout=30,
    ).json()
    assert len(runs) >= 2


def _healthz_count(metrics: str) -> float:
    prefix = 'octavius_api_requests_total{method="GET",route="/healthz",status="200"} '
    lines = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_stack_api_workers_count_requests_together(stack: RunningStack) -> None:
    # The stack runs two API workers on one port (OCTAVIUS_API_WORKERS): /metrics of either
    # counts the requests of both.
    folder = stack.home / "prometheus"
    scrape = f"{stack.api}/metrics"
    before = _healthz_count(httpx.get(scrape, timeout=30).text)
    sent = 40
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: httpx.get(f"{stack.api}/healthz").status_code, range(sent)))
    assert codes == [200] * sent
    writers = {path.stem.rsplit("_", 1)[-1] for path in folder.glob("counter_*.db")}
    assert len(writers) >= 2, f"only workers {writers} wrote request counts"
    for _ in range(6):  # each scrape is answered by either worker
        assert _healthz_count(httpx.get(scrape, timeout=30).text) == before + sent


def test_stack_api_writes_no_line_per_request_by_default(stack: RunningStack) -> None:
    # OCTAVIUS_API_ACCESS_LOG is off: the API's log keeps uvicorn's own lines, not one per request.
    for _ in range(5):
        assert httpx.get(f"{stack.api}/healthz").status_code == 200
    log = (stack.home / "logs" / "api.log").read_text()
    assert "Application startup complete" in log
    assert "/healthz" not in log


def test_stack_sigint_stops_every_child(stack: RunningStack) -> None:
    children = descendants(stack.process.pid) | stack.children
    assert children, "the stack started no child process"
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=90) == 0
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [pid for pid in children if alive(pid)] == []
    assert not (stack.home / "stack.json").exists()
