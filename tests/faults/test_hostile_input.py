"""Hostile input: bombs, page floods, binary and mis-encoded text, traversal names.

Each gets a clear failed record (or a 4xx), memory stays bounded, and the good documents of
the same batch are indexed as if the bad ones were not there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from core.models import DocumentStatus, FailureReason
from core.store import get_store
from flows.ingest import ingest_documents
from tests.api.conftest import api_home, client, wait_final  # noqa: F401  (fixtures)
from tests.docgen import make_zip_bomb, write_text
from tests.faults.hostile_docs import make_binary_text, make_flate_bomb_pdf, make_page_flood_pdf

REPO = Path(__file__).resolve().parents[2]
GOOD_TEXT = "# Backups\n\nThe backup job rotates seven daily copies to the external disk.\n"
# Peak RSS allowed to the parsing process: imports take about 160 MB; the bomb alone inflates
# to 4 GiB, and without the guard PDFium held about 2x the inflated size.
MAX_PARSE_RSS_MB = 400


def _broken_utf8(path: Path) -> Path:
    """UTF-8 text with a few invalid bytes in the middle."""
    path.write_bytes("Año nuevo, señal débil. ".encode() * 20 + b"\xff\xc3(" + b" fin" * 10)
    return path


@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, tuple[Path, FailureReason | None]]:
    """Every hostile file with the reason it must fail with (None: it must be indexed)."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    return {
        "bomb.pdf": (make_flate_bomb_pdf(folder / "bomb.pdf", 4096), FailureReason.TOO_LARGE),
        "pages.pdf": (make_page_flood_pdf(folder / "pages.pdf", 5000), FailureReason.TOO_LARGE),
        "bomb.docx": (
            make_zip_bomb(folder / "bomb.docx", uncompressed_mb=600),
            FailureReason.TOO_LARGE,
        ),
        "binary.txt": (make_binary_text(folder / "binary.txt"), FailureReason.UNSUPPORTED),
        "utf16-no-bom.txt": (
            write_text(folder / "utf16-no-bom.txt", "texto " * 50, encoding="utf-16-le"),
            FailureReason.UNSUPPORTED,  # without a byte-order mark it cannot be told from binary
        ),
        "broken-utf8.txt": (_broken_utf8(folder / "broken-utf8.txt"), None),
        "latin1.txt": (
            write_text(folder / "latin1.txt", "Configuración de la señal " * 20, "latin-1"),
            None,
        ),
        "good.md": (write_text(folder / "good.md", GOOD_TEXT), None),
    }


def test_parsing_hostile_files_keeps_memory_bounded(
    hostile: dict[str, tuple[Path, FailureReason | None]],
) -> None:
    # A fresh process, so its peak RSS measures only these parses. VmHWM, not ru_maxrss: the
    # latter keeps the forked test process's size from before exec (over 1 GB late in a run).
    script = """
import json, sys
from pathlib import Path
from tasks.parsing import parse_document
out = {}
for raw in sys.argv[1:]:
    path = Path(raw)
    try:
        parse_document(path, doc_id="x", source=path.name, max_bytes=50 * 2**20, max_pages=2000)
        out[path.name] = None
    except Exception as exc:
        out[path.name] = [getattr(getattr(exc, "reason", None), "value", None), str(exc)]
status = Path("/proc/self/status").read_text().splitlines()
out["peak_rss_mb"] = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
print(json.dumps(out))
"""
    paths = [str(path) for path, _ in hostile.values()]
    done = subprocess.run(
        [sys.executable, "-c", script, *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    peak = outcome.pop("peak_rss_mb")
    assert {name: (r[0] if r else None) for name, r in outcome.items()} == {
        name: (reason.value if reason else None) for name, (_, reason) in hostile.items()
    }
    assert "decompression bomb" in outcome["bomb.pdf"][1]
    assert "5000 pages" in outcome["pages.pdf"][1]
    assert "zip bomb" in outcome["bomb.docx"][1] or "expands to" in outcome["bomb.docx"][1]
    assert peak < MAX_PARSE_RSS_MB, f"peak RSS {peak:.0f} MB"


def test_flow_batch_with_hostile_files_indexes_the_good_ones(
    stack_env: Path, hostile: dict[str, tuple[Path, FailureReason | None]]
) -> None:
    folder = next(iter(hostile.values()))[0].parent
    report = ingest_documents(paths=[str(folder)], tenant="hostile")
    outcome = {Path(d.source).name: (d.status, d.reason) for d in report.documents}
    assert outcome == {
        name: (DocumentStatus.FAILED, reason) if reason else (DocumentStatus.INDEXED, None)
        for name, (_, reason) in hostile.items()
    }
    assert all(d.error for d in report.documents if d.status is DocumentStatus.FAILED)
    stored = {Path(p.source).name for _, p in get_store().scroll("hostile")}
    assert stored == {name for name, (_, reason) in hostile.items() if reason is None}
    assert get_store().count("hostile") == report.chunks_embedded


@pytest.mark.asyncio(loop_scope="session")
async def test_api_upload_of_hostile_files_and_names(
    client: httpx.AsyncClient,  # noqa: F811
    api_home: Path,  # noqa: F811
    hostile: dict[str, tuple[Path, FailureReason | None]],
) -> None:
    names = {
        "bomb.pdf": "../../../../tmp/bomb.pdf",  # POSIX traversal
        "pages.pdf": "..\\..\\windows\\pages.pdf",  # Windows traversal
        "bomb.docx": "/etc/bomb.docx",  # absolute path
        "binary.txt": "bin\x00ary.txt",  # NUL byte
        "utf16-no-bom.txt": "utf16-no-bom.txt",
        "broken-utf8.txt": "broken-utf8.txt",
        "latin1.txt": "latin1.txt",
        "good.md": "good.md",
    }
    files = [
        ("files", (names[name], path.read_bytes(), "application/octet-stream"))
        for name, (path, _) in hostile.items()
    ]
    response = await client.post("/api/documents/upload", files=files)
    assert response.status_code == 202, response.text
    uploads = (api_home / "uploads").resolve()
    for saved in uploads.rglob("*"):
        assert saved.resolve().is_relative_to(uploads)
    final = await wait_final(client, response.json()["status_url"])
    assert final["state"] == "COMPLETED", final
    outcome = {d["source"]: (d["status"], d.get("reason")) for d in final["result"]["documents"]}
    expected_names = {
        "bomb.pdf": "bomb.pdf",
        "pages.pdf": "pages.pdf",
        "bomb.docx": "bomb.docx",
        "binary.txt": "bin_00ary.txt",  # httpx sends the NUL as %00; "%" is made safe
    }
    assert outcome == {
        expected_names.get(name, name): ("failed", reason.value) if reason else ("indexed", None)
        for name, (_, reason) in hostile.items()
    }


@pytest.mark.asyncio(loop_scope="session")
async def test_api_oversize_upload_is_413_and_leaves_nothing(
    client: httpx.AsyncClient,  # noqa: F811
    api_home: Path,  # noqa: F811
) -> None:
    # 60 MiB against the default 50 MiB limit, next to a small good file in the same request.
    before = set((api_home / "uploads").rglob("*")) if (api_home / "uploads").exists() else set()
    response = await client.post(
        "/api/documents/upload",
        files=[
            ("files", ("ok.md", GOOD_TEXT.encode(), "text/markdown")),
            ("files", ("huge.txt", b"a" * (60 * 2**20), "text/plain")),
        ],
    )
    assert response.status_code == 413, response.text
    assert "huge.txt" in response.json()["detail"]
    after = set((api_home / "uploads").rglob("*")) if (api_home / "uploads").exists() else set()
    assert {p for p in after - before if p.is_file()} == set()
