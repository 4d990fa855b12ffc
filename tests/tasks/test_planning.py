"""Planning: which files are new, changed, unchanged, rejected or gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.models import DocumentStatus, FailureReason, SourceFile, StoredDocument
from tasks.parsing import file_sha256
from tasks.planning import discover_files, document_id, folders_of, index_version, plan_ingestion

FINGERPRINT = "chunk-fp"
MODEL = "st:model"


def _stored(file: SourceFile, version: str, mixed: bool = False) -> StoredDocument:
    return StoredDocument(
        doc_id=file.doc_id,
        source=file.source,
        version=version,
        content_hash="h",
        chunk_count=3,
        mixed_versions=mixed,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with two visible files, one in a subfolder, and a hidden one."""
    (tmp_path / "kb" / "sub").mkdir(parents=True)
    (tmp_path / "kb" / "a.md").write_text("# A\n\nalpha\n")
    (tmp_path / "kb" / "sub" / "b.txt").write_text("beta")
    (tmp_path / "kb" / ".git").mkdir()
    (tmp_path / "kb" / ".git" / "config").write_text("hidden")
    return tmp_path / "kb"


def test_discover_files_walks_folders_and_skips_hidden(folder: Path) -> None:
    files, missing = discover_files([str(folder)], "t")
    assert sorted(Path(f.source).name for f in files) == ["a.md", "b.txt"]
    assert missing == []
    assert all(f.doc_id == document_id("t", f.source) for f in files)


def test_discover_files_reports_missing_paths(tmp_path: Path) -> None:
    files, missing = discover_files([str(tmp_path / "nope.pdf")], "t")
    assert files == []
    assert [(m.status, m.reason) for m in missing] == [
        (DocumentStatus.FAILED, FailureReason.NOT_FOUND)
    ]


def test_discover_files_uses_given_names(folder: Path) -> None:
    path = str(folder / "a.md")
    files, _ = discover_files([path], "t", names={path: "upload.md"})
    assert [f.source for f in files] == ["upload.md"]


def test_document_id_depends_on_tenant_and_source() -> None:
    assert document_id("t", "a") == document_id("t", "a")
    assert len({document_id("t", "a"), document_id("u", "a"), document_id("t", "b")}) == 3


@pytest.mark.parametrize(
    ("stored_version", "mixed", "expected"),
    [
        (None, False, "index"),  # new document
        ("other-version", False, "index"),  # content, config or model changed
        ("same", False, "unchanged"),  # nothing changed
        ("same", True, "index"),  # an earlier write died between new and old version
    ],
)
def test_plan_ingestion_decides_per_document(
    folder: Path, stored_version: str | None, mixed: bool, expected: str
) -> None:
    files, _ = discover_files([str(folder / "a.md")], "t")
    current = index_version(file_sha256(Path(files[0].path)), FINGERPRINT, MODEL)
    stored = {}
    if stored_version is not None:
        version = current if stored_version == "same" else stored_version
        stored = {files[0].doc_id: _stored(files[0], version, mixed)}
    plan = plan_ingestion(
        files, stored, chunking_fingerprint=FINGERPRINT, model_id=MODEL, max_bytes=10**6
    )
    decided = "index" if plan.to_index else "unchanged" if plan.unchanged else "?"
    assert decided == expected


def test_plan_ingestion_rejects_oversize_files_without_reading_them(folder: Path) -> None:
    files, _ = discover_files([str(folder)], "t")
    plan = plan_ingestion(files, {}, chunking_fingerprint=FINGERPRINT, model_id=MODEL, max_bytes=3)
    assert {r.reason for r in plan.rejected} == {FailureReason.TOO_LARGE}
    assert plan.to_index == []


def test_index_version_changes_with_each_input() -> None:
    base = index_version("h", "c", "m")
    assert (
        len(
            {
                base,
                index_version("h2", "c", "m"),
                index_version("h", "c2", "m"),
                index_version("h", "c", "m2"),
            }
        )
        == 4
    )


def test_plan_ingestion_prunes_only_inside_given_folders(folder: Path, tmp_path: Path) -> None:
    files, _ = discover_files([str(folder)], "t")
    inside = SourceFile(
        path="", source=str(folder.resolve() / "gone.md"), doc_id=document_id("t", "gone"), size=1
    )
    outside = SourceFile(
        path="", source=str(tmp_path / "elsewhere.md"), doc_id=document_id("t", "else"), size=1
    )
    stored = {f.doc_id: _stored(f, "v") for f in (inside, outside)}
    plan = plan_ingestion(
        files,
        stored,
        chunking_fingerprint=FINGERPRINT,
        model_id=MODEL,
        max_bytes=10**6,
        prune_folders=folders_of([str(folder)]),
    )
    assert [d.source for d in plan.to_remove] == [inside.source]


def test_write_order_puts_chunk_zero_last() -> None:
    from core.models import Chunk, ChunkedDocument, DocumentFormat
    from tasks.indexing import build_points, write_order

    chunks = [
        Chunk(doc_id="d", chunk_index=i, text=f"chunk {i}", char_start=0, char_end=7, token_count=2)
        for i in range(5)
    ]
    document = ChunkedDocument(
        doc_id="d",
        source="s",
        format=DocumentFormat.TEXT,
        content_hash="h",
        version="v",
        title="t",
        language="en",
        page_count=1,
        chunks=chunks,
        embed_texts=[c.text for c in chunks],
    )
    ordered = write_order(build_points(document, [[0.0] * 4] * 5, "t"))
    assert [p.payload.chunk_index for p in ordered] == [1, 2, 3, 4, 0]
