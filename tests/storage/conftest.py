"""An S3 stand-in speaking the real protocol on loopback (moto's server), and storage settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.processes import free_port

# Fake credentials: moto accepts any, and they keep botocore from looking for real ones.
S3_KEY = "octavius-test"
S3_SECRET = "octavius-test-secret"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server in its own process, stopped after the module."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log_path.read_text()[-2000:]
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def storage_options(endpoint: str) -> dict[str, object]:
    """fsspec (s3fs) options for the moto server."""
    return {
        "endpoint_url": endpoint,
        "key": S3_KEY,
        "secret": S3_SECRET,
    }


@pytest.fixture(scope="module")
def storage_url(s3_endpoint: str) -> str:
    """A fresh bucket on the moto server and the storage URL of a prefix inside it."""
    import s3fs

    bucket = f"octavius-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(**storage_options(s3_endpoint), skip_instance_cache=True)
    fs.mkdir(bucket)
    return f"s3://{bucket}/shared"


@pytest.fixture(scope="module")
def storage_env(storage_url: str, s3_endpoint: str) -> Iterator[dict[str, str]]:
    """OCTAVIUS_STORAGE_URL and OCTAVIUS_STORAGE_OPTIONS set for this process and its children."""
    from core.settings import get_settings

    env = {
        "OCTAVIUS_STORAGE_URL": storage_url,
        "OCTAVIUS_STORAGE_OPTIONS": json.dumps(storage_options(s3_endpoint)),
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def _clear_server_default() -> None:
    from prefect import get_client

    with suppress(Exception), get_client(sync_client=True) as client:
        client.clear_server_default_result_storage()


def bucket_keys(storage_url: str, s3_endpoint: str, prefix: str) -> list[str]:
    """Keys under `<storage_url>/<prefix>`, read straight from the S3 server."""
    import s3fs

    fs = s3fs.S3FileSystem(**storage_options(s3_endpoint), skip_instance_cache=True)
    root = storage_url.removeprefix("s3://") + "/" + prefix
    return sorted(fs.find(root))


REPO = Path(__file__).resolve().parents[2]
ALICE = {"Authorization": "Bearer alice-token"}


@pytest.fixture(scope="module")
def served_home(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness: None, storage_env: dict[str, str]
) -> Iterator[Path]:
    """An OCTAVIUS_HOME with `deployments.serve` running against the harness and the bucket.

    No Dask address: each flow run uses threads in its own process, which inherits the storage
    settings (the session's Dask workers were started without them). Afterwards the harness's
    default result storage is cleared, so later modules keep local results.
    """
    from prefect.settings import PREFECT_API_URL

    from core.settings import get_settings

    home = tmp_path_factory.mktemp("storage") / "home"
    env_update = {
        "OCTAVIUS_HOME": str(home),
        "OCTAVIUS_DASK_ADDRESS": "",
        "OCTAVIUS_API_TOKENS": '{"alice-token": "alice"}',
        # Runs are created on the request path (no reservoir of runs made ahead).
        "OCTAVIUS_RESERVED_RUNS": "0",
    }
    saved = {key: os.environ.get(key) for key in env_update}
    os.environ.update(env_update)
    get_settings.cache_clear()
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
    log_path = home.parent / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        _wait_for_deployments(serve, log_path)
        yield home
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        _clear_server_default()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def _wait_for_deployments(serve: subprocess.Popen[bytes], log: Path) -> None:
    from prefect import get_client

    from deployments.names import AUDIT, INGEST

    deadline = time.monotonic() + 180
    with get_client(sync_client=True) as prefect:
        for name in (INGEST, AUDIT):
            while True:
                assert serve.poll() is None, log.read_text()[-3000:]
                try:
                    prefect.read_deployment_by_name(name)
                    break
                except Exception:
                    assert time.monotonic() < deadline, "deployments not served in time"
                    time.sleep(0.5)


@pytest_asyncio.fixture(loop_scope="session")
async def client(served_home: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a fresh app (same process settings as the served flows)."""
    from api.main import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=ALICE
        ) as http:
            yield http
