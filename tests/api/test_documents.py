"""Upload, status and search over HTTP, with the ingestion deployment served for real."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.deps import current_settings
from core.settings import Settings
from tests.api.conftest import wait_final
from tests.docgen import make_pdf

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_upload_returns_202_then_status_reaches_completed(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    pdf = make_pdf(
        tmp_path / "guía.pdf",
        [
            ["# Red", "La red se configura en el archivo /etc/network/interfaces con ifup."],
            ["# Cuotas", "Disk quotas are enabled with the usrquota option in /etc/fstab."],
        ],
        title="Guía de administración",
    )
    response = await client.post(
        "/api/documents/upload",
        files=[
            ("files", ("guía.pdf", pdf.read_bytes(), "application/pdf")),
            (
                "files",
                ("notes.md", b"# DNS\n\nThe resolver reads /etc/resolv.conf.\n", "text/markdown"),
            ),
        ],
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"task_id", "status_url", "events_url"}
    assert (
        response.headers["location"]
        == accepted["status_url"]
        == f"/api/tasks/{accepted['task_id']}"
    )
    final = await wait_final(client, accepted["status_url"])
    assert final["state"] == "COMPLETED", final
    assert final["kind"] == "ingest"
    assert final["progress"]["percent"] == 100.0
    documents = {d["source"]: d for d in final["result"]["documents"]}
    assert {name: d["status"] for name, d in documents.items()} == {
        "guía.pdf": "indexed",
        "notes.md": "indexed",
    }
    assert documents["guía.pdf"]["pages"] == 2
    found = await client.get(
        "/api/search", params={"q": "¿cómo activo las cuotas de disco?", "k": 2}
    )
    assert found.status_code == 200
    top = found.json()["hits"][0]
    assert "usrquota" in top["text"]
    assert (top["document"], top["page"], top["title"]) == ("guía.pdf", 2, "Guía de administración")


@pytest.mark.parametrize(
    ("files", "status"),
    [
        # no file at all
        ([("other", ("a.txt", b"x", "text/plain"))], 422),
        # a type ingestion cannot read
        ([("files", ("tool.exe", b"MZ\x90\x00", "application/octet-stream"))], 415),
        # the same name twice in one request
        ([("files", ("a.txt", b"x", "text/plain")), ("files", ("a.txt", b"y", "text/plain"))], 422),
        # a name that is only dots and slashes
        ([("files", ("../..", b"x", "text/plain"))], 422),
    ],
)
async def test_upload_rejects_bad_requests(
    client: httpx.AsyncClient, files: list, status: int
) -> None:
    response = await client.post("/api/documents/upload", files=files)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


async def test_upload_rejects_a_body_that_is_not_multipart(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/documents/upload", json={"files": []})
    assert response.status_code == 415


async def test_upload_rejects_a_file_over_the_limit(
    client: httpx.AsyncClient, api_home: Path
) -> None:
    client.app.dependency_overrides[current_settings] = lambda: Settings(  # type: ignore[attr-defined]
        home=api_home, max_file_mb=0.01
    )
    try:
        response = await client.post(
            "/api/documents/upload", files=[("files", ("big.txt", b"a" * 20_000, "text/plain"))]
        )
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert response.status_code == 413
    assert "big.txt" in response.json()["detail"]


async def test_upload_strips_directories_from_names(
    client: httpx.AsyncClient, api_home: Path
) -> None:
    response = await client.post(
        "/api/documents/upload",
        files=[("files", ("../../etc/evil name.txt", b"hello there", "text/plain"))],
    )
    assert response.status_code == 202
    saved = list((api_home / "uploads").rglob("evil name.txt"))
    assert len(saved) == 1
    assert saved[0].resolve().is_relative_to((api_home / "uploads").resolve())
    await wait_final(client, response.json()["status_url"])


async def test_upload_idempotency_key_returns_the_same_task(client: httpx.AsyncClient) -> None:
    files = [("files", ("once.txt", b"uploaded once, asked twice", "text/plain"))]
    headers = {"Idempotency-Key": "upload-once"}
    first = await client.post("/api/documents/upload", files=files, headers=headers)
    again = await client.post("/api/documents/upload", files=files, headers=headers)
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert first.json() == again.json()
    assert again.headers["location"] == first.json()["status_url"]
    bad = await client.post(
        "/api/documents/upload", files=files, headers={"Idempotency-Key": "no spaces"}
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    await wait_final(client, first.json()["status_url"])


async def test_upload_documents_the_headers_of_every_task_start(client: httpx.AsyncClient) -> None:
    # The upload route reads its headers itself (api.start_route); research declares them.
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    upload, research = paths["/api/documents/upload"]["post"], paths["/api/research"]["post"]
    assert upload["parameters"] == research["parameters"]
    assert upload["security"] == research["security"]
    for code in ("401", "422", "429"):
        assert upload["responses"][code] == research["responses"][code]


@pytest.mark.parametrize(
    "task_id",
    [
        "00000000-0000-0000-0000-000000000000",  # well-formed, unknown
        "not-a-uuid",  # malformed
    ],
)
async def test_get_unknown_task_is_404(client: httpx.AsyncClient, task_id: str) -> None:
    response = await client.get(f"/api/tasks/{task_id}")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {"q": ""},  # empty query
        {"q": "   "},  # blank query
        {"q": "x", "k": 0},  # k below 1
        {"q": "x", "k": 10_000},  # k above the limit
        {"q": "x", "mode": "magic"},  # unknown mode
    ],
)
async def test_search_rejects_bad_parameters(client: httpx.AsyncClient, params: dict) -> None:
    response = await client.get("/api/search", params=params)
    assert response.status_code == 422


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"prefect": "ok", "qdrant": "ok"}
