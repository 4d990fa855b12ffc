"""The API over HTTP (ASGI transport) against the harness, with the deployments really served."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

REPO = Path(__file__).resolve().parents[2]
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
SERVICE_TOKEN = "service-token"
TEST_ENV = {
    "OCTAVIUS_HOME": "",
    "OCTAVIUS_DASK_ADDRESS": "",
    "OCTAVIUS_API_TOKENS": '{"alice-token": "alice", "bob-token": "bob"}',
    "OCTAVIUS_SERVICE_TOKEN": SERVICE_TOKEN,
    # Runs are created on the request path unless a test module turns the reservoir on.
    "OCTAVIUS_RESERVED_RUNS": "0",
}


@pytest.fixture(scope="module")
def api_home(tmp_path_factory: pytest.TempPathFactory, dask_address: str) -> Iterator[Path]:
    """An OCTAVIUS_HOME for the module, with `deployments.serve` running against the harness."""
    from prefect.settings import PREFECT_API_URL

    from core.settings import get_settings

    home = tmp_path_factory.mktemp("api") / "home"
    saved = {k: os.environ.get(k) for k in TEST_ENV}
    os.environ.update(TEST_ENV, OCTAVIUS_HOME=str(home), OCTAVIUS_DASK_ADDRESS=dask_address)
    get_settings.cache_clear()
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
    log = (home.parent / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "deployments.serve"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        _wait_for_deployment(serve, home.parent / "serve.log")
        yield home
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def _wait_for_deployment(serve: subprocess.Popen[bytes], log: Path, timeout_s: float = 120) -> None:
    """Blocks until the served ingestion deployment is registered."""
    from prefect import get_client

    from deployments.names import INGEST

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as prefect:
        while True:
            assert serve.poll() is None, log.read_text()[-3000:]
            try:
                prefect.read_deployment_by_name(INGEST)
                return
            except Exception:
                assert time.monotonic() < deadline, "deployment not served in time"
                time.sleep(0.5)


@pytest_asyncio.fixture(loop_scope="session")
async def client(api_home: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a fresh app whose lifespan has run."""
    from api.main import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=ALICE
        ) as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


async def wait_final(client: httpx.AsyncClient, url: str, timeout_s: float = 240) -> dict:
    """Polls a task until it reaches a final state."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["state"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return body
        await asyncio.sleep(1)
    raise AssertionError(f"task not final after {timeout_s} s: {body}")
