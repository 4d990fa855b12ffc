"""Uploads and planning on an S3 stand-in: safety, identity and the local default, no Prefect."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import HTTPException
from starlette.datastructures import UploadFile

from api.uploads import new_upload_dir, safe_name, save_upload
from core.settings import get_settings
from core.storage import (
    apply_result_storage,
    is_url,
    local_file,
    result_storage_block,
    uploads_location,
)
from tasks.planning import discover_files, document_id, plan_ingestion
from tests.storage.conftest import bucket_keys


@pytest.fixture
def shared(
    storage_env: dict[str, str], octavius_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The storage URL, with the settings cache cleared so this test reads it."""
    for key, value in storage_env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield storage_env["OCTAVIUS_STORAGE_URL"]
    get_settings.cache_clear()


def _upload(data: bytes, name: str) -> UploadFile:
    return UploadFile(io.BytesIO(data), filename=name)


def test_storage_upload_saved_under_the_url(shared: str, s3_endpoint: str) -> None:
    folder = new_upload_dir(uploads_location(get_settings()), "ali/../ce")
    name = safe_name("../../etc/informe final.pdf")
    ref = save_upload(_upload(b"%PDF-1.4 hello", "x"), folder, name, max_bytes=1024)
    assert ref.startswith(f"{shared}/uploads/ali_.._ce/") and ref.endswith("/informe final.pdf")
    # Nothing outside the request's own prefix: the traversal name was reduced to a base name.
    prefix = ref.removeprefix(f"{shared}/").rsplit("/", 1)[0]
    assert bucket_keys(shared, s3_endpoint, prefix) == [
        ref.removeprefix("s3://"),
    ]
    with local_file(ref) as local:
        assert local.read_bytes() == b"%PDF-1.4 hello"
        assert local.name == "informe final.pdf"
    assert not local.exists()


def test_storage_oversize_upload_leaves_nothing(shared: str, s3_endpoint: str) -> None:
    folder = new_upload_dir(uploads_location(get_settings()), "bob")
    save_upload(_upload(b"first", "a.txt"), folder, "a.txt", max_bytes=1024)
    with pytest.raises(HTTPException) as raised:
        save_upload(_upload(b"x" * 5000, "b.txt"), folder, "b.txt", max_bytes=1024)
    assert raised.value.status_code == 413
    prefix = folder.removeprefix(f"{shared}/")
    assert bucket_keys(shared, s3_endpoint, prefix) == []


def test_storage_uploaded_document_keeps_identity_and_hash(shared: str, tmp_path: Path) -> None:
    data = b"# Cuotas\n\nLas cuotas se activan con usrquota en /etc/fstab.\n"
    folder = new_upload_dir(uploads_location(get_settings()), "carol")
    first = save_upload(_upload(data, "notas.md"), folder, "notas.md", max_bytes=1 << 20)
    again = save_upload(
        _upload(data, "notas.md"),
        new_upload_dir(uploads_location(get_settings()), "carol"),
        "notas.md",
        max_bytes=1 << 20,
    )
    local = tmp_path / "notas.md"
    local.write_bytes(data)
    files, missing = discover_files([first, again], "carol", {first: "notas.md", again: "notas.md"})
    assert missing == []
    # Two uploads of the same file under the same name are one document, as on local disk.
    assert [f.doc_id for f in files] == [document_id("carol", "notas.md")]
    assert files[0].size == len(data)
    plan = plan_ingestion(files, {}, chunking_fingerprint="c", model_id="m", max_bytes=1 << 20)
    assert plan.to_index[0].content_hash == hashlib.sha256(data).hexdigest()
    assert is_url(plan.to_index[0].file.path)


def test_storage_missing_object_is_reported_not_found(shared: str) -> None:
    from tasks.parsers import ParseError
    from tasks.parsing import parse_document

    url = f"{shared}/uploads/nobody/none/gone.pdf"
    files, missing = discover_files([url], "t", {url: "gone.pdf"})
    assert files == []
    assert [(m.source, m.reason.value if m.reason else None) for m in missing] == [
        ("gone.pdf", "not_found")
    ]
    # Gone between planning and parsing: the same reason as a vanished local file.
    with local_file(url) as path, pytest.raises(ParseError) as raised:
        parse_document(path, doc_id="d", source="gone.pdf", max_bytes=1 << 20, max_pages=10)
    assert raised.value.reason.value == "not_found"


def test_storage_unset_keeps_local_folders(
    octavius_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OCTAVIUS_STORAGE_URL", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.storage_url is None
    assert uploads_location(settings) == str((octavius_home / "uploads").resolve())
    # No URL: Prefect's result storage is left alone (no server is contacted).
    assert apply_result_storage(settings) is None
    folder = new_upload_dir(uploads_location(settings), "dave")
    ref = save_upload(_upload(b"hi", "a.txt"), folder, "a.txt", max_bytes=10)
    assert Path(ref) == (octavius_home / "uploads" / "dave" / Path(folder).name / "a.txt").resolve()
    assert Path(ref).read_bytes() == b"hi"


def test_storage_file_url_uses_the_shared_folder(
    tmp_path: Path, octavius_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.filesystems import LocalFileSystem

    shared = tmp_path / "mnt" / "octavius"
    monkeypatch.setenv("OCTAVIUS_STORAGE_URL", f"file://{shared}/")
    get_settings.cache_clear()
    settings = get_settings()
    block = result_storage_block(settings)
    # Prefect only accepts local paths in a LocalFileSystem block; results land on the mount.
    assert isinstance(block, LocalFileSystem)
    assert block.basepath == str(shared / "results")
    block.write_path("record", b"cached")
    assert (shared / "results" / "record").read_bytes() == b"cached"
    folder = new_upload_dir(uploads_location(settings), "erin")
    ref = save_upload(_upload(b"# T\n\nbody\n", "t.md"), folder, "t.md", max_bytes=100)
    assert ref.startswith(f"file://{shared}/uploads/erin/")
    with local_file(ref) as local:
        assert local.read_bytes() == b"# T\n\nbody\n"
    assert local.exists()  # a mounted file is read in place, never deleted
    assert not (octavius_home / "uploads").exists()
