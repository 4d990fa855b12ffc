"""POST /api/research over HTTP, with the research deployment really served."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from deployments.names import RESEARCH
from tests.api.conftest import BOB, wait_final

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Real text of the Debian Reference (benchmarks/corpus/en/ch05.en.html, section 5.6).
NETFILTER = (
    "# Netfilter infrastructure\n\n"
    "Netfilter provides infrastructure for stateful firewall and network address translation "
    "(NAT) with Linux kernel modules.\n\n"
    "Main user space program of netfilter is iptables(8). You can manually configure "
    "netfilter interactively from shell, save its state with iptables-save(8), and restore "
    "it via init script with iptables-restore(8) upon system reboot.\n"
)
QUESTION = "How do I save my netfilter firewall rules and restore them after a reboot?"


async def _wait_for_research_deployment(timeout_s: float = 60) -> None:
    """Blocks until serve() has registered the research deployment."""
    from prefect import get_client

    deadline = time.monotonic() + timeout_s
    async with get_client() as prefect:
        while True:
            try:
                await prefect.read_deployment_by_name(RESEARCH)
                return
            except Exception:
                assert time.monotonic() < deadline, "research deployment not served"
                await asyncio.sleep(0.5)


async def _wait_final_as(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], timeout_s: float = 240
) -> dict[str, Any]:
    """Polls a task as another user until it reaches a final state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body: dict[str, Any] = (await client.get(url, headers=headers)).json()
        if body.get("state") in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return body
        await asyncio.sleep(1)
    raise AssertionError(f"task not final after {timeout_s} s")


async def test_research_returns_202_then_a_cited_report(client: httpx.AsyncClient) -> None:
    await _wait_for_research_deployment()
    upload = await client.post(
        "/api/documents/upload",
        files=[("files", ("netfilter.md", NETFILTER.encode(), "text/markdown"))],
    )
    assert upload.status_code == 202, upload.text
    assert (await wait_final(client, upload.json()["status_url"]))["state"] == "COMPLETED"

    response = await client.post("/api/research", json={"query": QUESTION, "depth": 2})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"task_id", "status_url", "events_url"}
    assert response.headers["location"] == accepted["status_url"]
    final = await wait_final(client, accepted["status_url"])
    assert final["state"] == "COMPLETED", final
    assert final["kind"] == "research"
    assert final["progress"]["percent"] == 100.0
    report = final["result"]
    assert report["tenant"] == "alice"
    assert report["language"] == "en"
    assert not report["nothing_found"]
    assert "iptables-save" in report["summary"] + "".join(s["text"] for s in report["sections"])
    assert report["citations"]
    assert {c["document"] for c in report["citations"]} == {"netfilter.md"}

    # Bob's knowledge base is his own: Alice's note is not his to cite.
    theirs = await client.post("/api/research", json={"query": QUESTION}, headers=BOB)
    assert theirs.status_code == 202, theirs.text
    final = await _wait_final_as(client, theirs.json()["status_url"], BOB)
    assert final["state"] == "COMPLETED", final
    assert final["result"]["nothing_found"]
    assert final["result"]["citations"] == []


async def test_research_idempotency_key_returns_the_same_task(client: httpx.AsyncClient) -> None:
    await _wait_for_research_deployment()
    headers = {"Idempotency-Key": "research-once"}
    body = {"query": "¿Qué es netfilter?", "language": "es", "depth": 1}
    first = await client.post("/api/research", json=body, headers=headers)
    second = await client.post("/api/research", json=body, headers=headers)
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["task_id"] == second.json()["task_id"]
    final = await wait_final(client, first.json()["status_url"])
    assert final["state"] == "COMPLETED", final
    assert final["result"]["language"] == "es"


@pytest.mark.parametrize(
    "body",
    [
        {},  # no query
        {"query": ""},  # empty
        {"query": "   \n "},  # blank
        {"query": "x" * 2001},  # too long
        {"query": 42},  # not a string
        {"query": "What is netfilter?", "depth": 0},  # depth below 1
        {"query": "What is netfilter?", "depth": 9},  # depth above 5
        {"query": "What is netfilter?", "language": "fr"},  # unsupported language
        {"query": "What is netfilter?", "tenant": "bob"},  # the tenant is the caller, not a field
    ],
)
async def test_research_rejects_bad_bodies(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/api/research", json=body)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()


async def test_research_requires_authentication(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/research", json={"query": QUESTION}, headers={"Authorization": ""}
    )
    assert response.status_code == 401
