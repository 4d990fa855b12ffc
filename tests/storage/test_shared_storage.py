"""Results and uploads in one bucket (moto's S3 server): upload, ingest, cache, audit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import get_settings
from core.storage import RESULTS_BLOCK
from tests.audit_docgen import make_audit_pdf
from tests.docgen import make_pdf
from tests.storage.conftest import bucket_keys

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _wait_final(
    client: httpx.AsyncClient, url: str, timeout_s: float = 300
) -> dict[str, Any]:
    import asyncio

    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["state"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return body
        await asyncio.sleep(1)
    raise AssertionError(f"task not final after {timeout_s} s: {body}")


async def _flow_run(task_id: str) -> Any:
    from uuid import UUID

    from prefect import get_client

    async with get_client() as prefect:
        return await prefect.read_flow_run(UUID(task_id))


async def _results_block_id() -> Any:
    from prefect.filesystems import RemoteFileSystem

    block = await RemoteFileSystem.aload(RESULTS_BLOCK)
    return getattr(block, "_block_document_id", None)


async def test_storage_upload_lands_in_bucket_and_is_indexed(
    client: httpx.AsyncClient,
    served_home: Path,
    storage_url: str,
    s3_endpoint: str,
    tmp_path: Path,
) -> None:
    pdf = make_pdf(
        tmp_path / "informe.pdf",
        [["# Zanahorias", "The quokka telescope rotates its zanahoria mirror every night."]],
    )
    response = await client.post(
        "/api/documents/upload",
        files=[("files", ("informe.pdf", pdf.read_bytes(), "application/pdf"))],
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    final = await _wait_final(client, response.json()["status_url"])
    assert final["state"] == "COMPLETED", final
    # The API read this flow result back from the bucket.
    documents = {d["source"]: d for d in final["result"]["documents"]}
    assert documents["informe.pdf"]["status"] == "indexed", documents
    assert documents["informe.pdf"]["chunks"] >= 1

    run = await _flow_run(task_id)
    [uploaded] = run.parameters["paths"]
    assert uploaded.startswith(f"{storage_url}/uploads/alice/")
    assert uploaded.endswith("/informe.pdf")
    assert run.parameters["names"] == {uploaded: "informe.pdf"}
    assert uploaded.removeprefix("s3://") in bucket_keys(storage_url, s3_endpoint, "uploads")
    assert not (served_home / "uploads" / "alice").exists()

    # The flow's own result is an object in the bucket, through the saved results block.
    metadata = run.state.data
    assert metadata.storage_block_id == await _results_block_id()
    results = bucket_keys(storage_url, s3_endpoint, "results")
    assert any(key.endswith(metadata.storage_key.rsplit("/", 1)[-1]) for key in results)
    assert (
        not any((served_home / "results").glob("*")) if (served_home / "results").exists() else True
    )

    found = await client.get("/api/search", params={"q": "quokka telescope zanahoria", "k": 1})
    assert found.status_code == 200, found.text
    top = found.json()["hits"][0]
    assert top["document"] == "informe.pdf"
    assert "quokka" in top["text"]


async def test_storage_cached_parse_is_found_by_another_process(
    client: httpx.AsyncClient,
    served_home: Path,
    storage_url: str,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    from flows.ingest import ingest_documents

    pdf = make_pdf(
        tmp_path / "cache.pdf",
        [["# Caché", "Wombat ledgers balance the cassowary inventory twice a week."]],
    )
    response = await client.post(
        "/api/documents/upload",
        files=[("files", ("cache.pdf", pdf.read_bytes(), "application/pdf"))],
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    final = await _wait_final(client, response.json()["status_url"])
    assert final["state"] == "COMPLETED", final
    first = await _flow_run(task_id)
    first_parse = await _parse_runs(first.id)
    assert len(first_parse) == 1 and first_parse[0].state.name == "Completed", first_parse
    parse_key = first_parse[0].state.data.storage_key.rsplit("/", 1)[-1]
    assert any(
        key.endswith(f"/results/{parse_key}")
        for key in bucket_keys(storage_url, s3_endpoint, "results")
    )

    # This test process is another machine as far as results go: it shares only the bucket
    # and the Prefect server, and has its own empty store, so the document must be parsed.
    monkeypatch.setenv("OCTAVIUS_HOME", str(tmp_path / "other-home"))
    get_settings.cache_clear()
    try:
        state = await _in_thread(lambda: ingest_documents(**first.parameters, return_state=True))
    finally:
        monkeypatch.setenv("OCTAVIUS_HOME", str(served_home))
        get_settings.cache_clear()
    report = await state.aresult()
    assert [d.status.value for d in report.documents] == ["indexed"]
    second_id = state.state_details.flow_run_id
    assert second_id is not None and str(second_id) != task_id
    second_parse = await _parse_runs(second_id)
    assert [t.state.name for t in second_parse] == ["Cached"], second_parse
    assert second_parse[0].state.data.storage_key.rsplit("/", 1)[-1] == parse_key


async def _parse_runs(flow_run_id: Any) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as prefect:
        task_runs = await prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [t for t in task_runs if t.name.startswith("parse ")]


async def _in_thread(call: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(call)


async def test_storage_audit_result_lands_in_bucket(
    client: httpx.AsyncClient, storage_url: str, s3_endpoint: str, tmp_path: Path
) -> None:
    pdf = make_audit_pdf(tmp_path / "auditar.pdf", [["# Informe", "Texto del informe anual."]])
    before = set(bucket_keys(storage_url, s3_endpoint, "results"))
    response = await client.post(
        "/api/audits", files={"file": ("auditar.pdf", pdf.read_bytes(), "application/pdf")}
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    final = await _wait_final(client, response.json()["status_url"])
    assert final["state"] == "COMPLETED", final
    [report] = final["result"]["reports"]
    assert report["file"] == "auditar.pdf"
    assert {a["auditor"] for a in report["auditors"]} == {"disclaimer", "format", "grammar", "logo"}
    assert all(a["verdict"] != "error" for a in report["auditors"]), report["auditors"]

    run = await _flow_run(task_id)
    [uploaded] = run.parameters["paths"]
    assert uploaded.startswith(f"{storage_url}/uploads/alice/")
    assert run.state.data.storage_block_id == await _results_block_id()
    added = {key.rsplit("/", 1)[-1] for key in bucket_keys(storage_url, s3_endpoint, "results")}
    added -= {key.rsplit("/", 1)[-1] for key in before}
    assert run.state.data.storage_key.rsplit("/", 1)[-1] in added
    # Each auditor's cached result (keyed by content, policy and code version) is there too.
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as prefect:
        task_runs = await prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    auditors: list[Any] = [
        t for t in task_runs if t.name.split(" ")[0] in {"disclaimer", "format", "grammar"}
    ]
    assert len(auditors) == 3, [t.name for t in task_runs]
    for task_run in auditors:
        assert task_run.state.data.storage_key.rsplit("/", 1)[-1] in added, task_run.name
