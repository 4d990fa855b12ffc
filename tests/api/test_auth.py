"""Authentication and ownership over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from api.deps import current_settings
from core.settings import Settings
from tests.api.conftest import BOB, SERVICE_TOKEN

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": ""}, 401),  # no token at all
        ({"Authorization": "Bearer nope"}, 401),  # unknown token
        ({"Authorization": "Basic YWxpY2U6eA=="}, 401),  # another scheme
        ({"Authorization": f"Bearer {SERVICE_TOKEN}"}, 400),  # service token without X-User-Id
        (
            {"Authorization": f"Bearer {SERVICE_TOKEN}", "X-User-Id": "../etc"},
            400,
        ),  # service token with a malformed user id
        ({"Authorization": "Bearer bob-token"}, 200),  # a user's own token
        ({"Authorization": f"Bearer {SERVICE_TOKEN}", "X-User-Id": "carol"}, 200),  # backend
    ],
)
async def test_auth_on_search(client: httpx.AsyncClient, headers: dict, status: int) -> None:
    response = await client.get("/api/search", params={"q": "anything"}, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"]


async def test_auth_every_task_route_requires_a_token(client: httpx.AsyncClient) -> None:
    anonymous = {"Authorization": ""}
    task = "00000000-0000-0000-0000-000000000000"
    assert (await client.get(f"/api/tasks/{task}", headers=anonymous)).status_code == 401
    upload = await client.post(
        "/api/documents/upload",
        files=[("files", ("a.txt", b"x", "text/plain"))],
        headers=anonymous,
    )
    assert upload.status_code == 401


async def test_auth_another_users_task_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/documents/upload", files=[("files", ("mine.txt", b"alice's notes", "text/plain"))]
    )
    assert response.status_code == 202
    status_url = response.json()["status_url"]
    assert (await client.get(status_url)).status_code == 200
    assert (await client.get(status_url, headers=BOB)).status_code == 404
    as_backend = {"Authorization": f"Bearer {SERVICE_TOKEN}", "X-User-Id": "alice"}
    assert (await client.get(status_url, headers=as_backend)).status_code == 200


async def test_auth_reads_tokens_file(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"file-token": "dave"}))
    monkeypatch.delenv("OCTAVIUS_API_TOKENS")
    settings = Settings(api_tokens_file=tokens)
    client.app.dependency_overrides[current_settings] = lambda: settings  # type: ignore[attr-defined]
    try:
        ok = await client.get(
            "/api/search", params={"q": "x"}, headers={"Authorization": "Bearer file-token"}
        )
        refused = await client.get("/api/search", params={"q": "x"})
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert ok.status_code == 200
    assert refused.status_code == 401  # alice's token is not in this configuration
