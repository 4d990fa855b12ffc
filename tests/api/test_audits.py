"""Starting audits over HTTP, with the audit deployment served for real."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import wait_final
from tests.audit_docgen import make_audit_pdf

pytestmark = pytest.mark.asyncio(loop_scope="session")

DISCLAIMER_ES = (
    "Este documento es confidencial y está destinado exclusivamente a su destinatario. "
    "Queda prohibida su copia o distribución sin autorización previa por escrito de Octavius."
)
BODY = (
    "El servidor de copias de seguridad se ejecuta cada noche y conserva siete copias "
    "diarias en el almacenamiento externo de la oficina central."
)


async def _post(client: httpx.AsyncClient, files: dict, data: dict | None = None) -> httpx.Response:
    """Posts an audit, waiting out the moment before serve() has registered the deployment."""
    deadline = time.monotonic() + 60
    while True:
        response = await client.post("/api/audits", files=files, data=data or {})
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(1)


async def test_audit_returns_202_then_completed_report(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    pdf = make_audit_pdf(tmp_path / "informe.pdf", [["# Informe", BODY], [BODY, DISCLAIMER_ES]])
    response = await _post(client, {"file": ("informe.pdf", pdf.read_bytes(), "application/pdf")})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"task_id", "status_url", "events_url"}
    final = await wait_final(client, accepted["status_url"])
    assert final["state"] == "COMPLETED", final
    assert final["kind"] == "audit"
    result = final["result"]
    assert result["policy"] == "default"
    (report,) = result["reports"]
    assert report["file"] == "informe.pdf" and report["page_count"] == 2
    auditors = {a["auditor"]: a for a in report["auditors"]}
    assert set(auditors) == {"disclaimer", "format", "grammar", "logo"}
    assert [f["rule"] for f in auditors["disclaimer"]["findings"]] == ["disclaimer.present"]


async def test_audit_with_own_policy_text_uses_it(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    pdf = make_audit_pdf(tmp_path / "doc.pdf", [[BODY]])
    policy = "name: mine\ndisclaimers:\n  - id: aviso\n    text: {es: Texto que no aparece.}\n"
    response = await _post(
        client, {"file": ("doc.pdf", pdf.read_bytes(), "application/pdf")}, {"policy": policy}
    )
    assert response.status_code == 202, response.text
    final = await wait_final(client, response.json()["status_url"])
    assert final["state"] == "COMPLETED", final
    assert final["result"]["policy"] == "mine"
    (report,) = final["result"]["reports"]
    disclaimer = next(a for a in report["auditors"] if a["auditor"] == "disclaimer")
    assert [f["rule"] for f in disclaimer["findings"]] == ["disclaimer.missing"]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        # a misspelt key, named with its path
        ("disclaimers:\n  - id: a\n    txt: hola\n", "disclaimers[0].txt: unknown key"),
        # a logo image that does not ship with the project
        ("logos:\n  - {id: l, image: /etc/hostname}\n", "outside the allowed folders"),
        ("logos:\n  - {id: l, image: missing.png}\n", "logo image 'missing.png' not found"),
    ],
    ids=["unknown-key", "outside-logo", "missing-logo"],
)
async def test_audit_with_bad_policy_is_422(
    client: httpx.AsyncClient, tmp_path: Path, policy: str, message: str
) -> None:
    pdf = make_audit_pdf(tmp_path / "doc.pdf", [[BODY]])
    response = await client.post(
        "/api/audits",
        files={
            "file": ("doc.pdf", pdf.read_bytes(), "application/pdf"),
            "policy": ("policy.yaml", policy.encode(), "application/yaml"),
        },
    )
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "policy"]
    assert message in error["msg"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        # a text file
        ("notes.txt", b"hello"),
        # named .pdf but not one
        ("fake.pdf", b"this is not a PDF at all"),
    ],
    ids=["txt", "fake-pdf"],
)
async def test_audit_of_non_pdf_is_415(
    client: httpx.AsyncClient, name: str, content: bytes
) -> None:
    response = await client.post("/api/audits", files={"file": (name, content, "text/plain")})
    assert response.status_code == 415, response.text
    assert "PDF" in response.json()["detail"]


async def test_audit_without_file_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/audits", files={"other": ("x.pdf", b"%PDF-1.4", "x")})
    assert response.status_code == 422, response.text
