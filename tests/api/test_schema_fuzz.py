"""Property-based fuzzing of the API: every operation of its OpenAPI schema, and upload names.

The ingestion deployment is registered but not served: fuzzed uploads create runs that stay
SCHEDULED, and they are deleted when the module ends so no later module's serve() runs them.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import schemathesis
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.main import create_app
from api.uploads import ALLOWED_SUFFIXES
from tests.api.conftest import TEST_ENV

FUZZER = "fuzzer"
FUZZER_HEADERS = {"Authorization": "Bearer fuzzer-token"}
# A user of its own keeps alice's and bob's task lists clean; the limits are raised so the
# fuzzer explores the API rather than the rate limiter.
FUZZ_ENV = {
    **TEST_ENV,
    "OCTAVIUS_API_TOKENS": json.dumps({"fuzzer-token": FUZZER}),
    "OCTAVIUS_RATE_LIMIT_PER_MINUTE": "1000000",
    "OCTAVIUS_RATE_LIMIT_BURST": "100000",
    "OCTAVIUS_MAX_TASKS_IN_FLIGHT": "100000",
}
# Bounded and reproducible: about a minute for the whole module on two busy cores.
FUZZ_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
)

# Read from the app's own document at collection time; no lifespan runs until a test calls the
# app. (schemathesis's lazy `from_fixture` loader fails on pytest 9.2: no `Node._nodeid`.)
schema = schemathesis.openapi.from_dict(create_app().openapi())


async def _delete_runs_of(user: str) -> int:
    """Deletes every flow run the user started; returns how many there were."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from api.prefect_tasks import USER_TAG

    deleted = 0
    async with get_client() as client:
        while runs := await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"{USER_TAG}{user}"]))
        ):
            for run in runs:
                await client.delete_flow_run(run.id)
            deleted += len(runs)
    return deleted


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[Path]:
    """An OCTAVIUS_HOME with the ingestion deployment registered in the harness but not served."""
    from prefect.settings import PREFECT_API_URL

    from core.settings import get_settings
    from deployments.serve import runner_deployments

    home = tmp_path_factory.mktemp("fuzz") / "home"
    # schemathesis runs the app on an event-loop thread of its own, outside the harness's
    # settings context, so the app finds the harness through the environment.
    saved = {k: os.environ.get(k) for k in [*FUZZ_ENV, "PREFECT_API_URL"]}
    os.environ.update(FUZZ_ENV, OCTAVIUS_HOME=str(home), PREFECT_API_URL=PREFECT_API_URL.value())
    get_settings.cache_clear()
    for deployment in runner_deployments():
        deployment.apply()
    try:
        yield home
    finally:
        asyncio.run(_delete_runs_of(FUZZER))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def fuzzed_app(fuzz_home: Path) -> FastAPI:
    """A fresh app; schemathesis calls it in process, its lifespan running for each test."""
    return create_app()


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_without_5xx_and_as_documented(
    case: Case, fuzzed_app: FastAPI
) -> None:
    case.call_and_validate(
        app=fuzzed_app,
        headers=FUZZER_HEADERS,
        checks=[not_a_server_error, response_schema_conformance],
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def fuzz_client(fuzz_home: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a fresh app whose lifespan has run, acting as the fuzzer's user."""
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=FUZZER_HEADERS
        ) as http:
            yield http


# schemathesis names every file part after its field, so upload names are fuzzed here: any
# text a client can send before a type ingestion reads, and long names in letters that take
# three or four bytes in UTF-8 (file systems count bytes).
@pytest.mark.asyncio(loop_scope="session")
@given(
    stem=st.one_of(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=200),
        st.text(
            st.characters(codec="utf-8", categories=["L"], min_codepoint=0x800),
            min_size=60,
            max_size=200,
        ),
    ),
    suffix=st.sampled_from(sorted(ALLOWED_SUFFIXES)),
)
@FUZZ_SETTINGS
async def test_upload_saves_any_file_name_inside_its_folder_or_refuses_it(
    fuzz_client: httpx.AsyncClient, fuzz_home: Path, stem: str, suffix: str
) -> None:
    uploads = (fuzz_home / "uploads").resolve()
    before = set(uploads.rglob("*"))
    response = await fuzz_client.post(
        "/api/documents/upload", files=[("files", (stem + suffix, b"hello", "text/plain"))]
    )
    # 415 and 422 when a slash or unsafe characters leave no usable name or type.
    assert response.status_code in {202, 415, 422}, response.text
    saved = [p for p in set(uploads.rglob("*")) - before if p.is_file()]
    if response.status_code != 202:
        assert saved == []
        return
    [path] = saved
    assert path.read_bytes() == b"hello"
    assert path.parent.parent == uploads / FUZZER
    assert len(path.name.encode()) <= 255
