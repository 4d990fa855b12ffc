"""Saving uploaded files: safe names, bounded sizes, streamed to disk."""

from __future__ import annotations

import re
import shutil
import unicodedata
import uuid
from pathlib import Path

from fastapi import HTTPException, Request, status
from starlette.datastructures import FormData, UploadFile

from api.errors import invalid

ALLOWED_SUFFIXES = frozenset(
    {".pdf", ".docx", ".md", ".markdown", ".html", ".htm", ".txt", ".text"}
)
_UNSAFE = re.compile(r"[^\w.\- ]+")
_COPY_CHUNK = 1 << 20
MAX_NAME_CHARS = 120
# File systems allow 255 bytes per name, and \w keeps letters that take 3-4 bytes in UTF-8.
MAX_NAME_BYTES = 200
_MAX_SUFFIX_CHARS = 10


async def read_multipart(
    request: Request, *, max_bytes: int, max_files: int, max_fields: int = 10
) -> FormData:
    """The request's multipart form once its declared length and type are acceptable.

    411 without a Content-Length, 413 past `max_bytes`, 415 when it is not multipart, 400 when
    the body does not parse.
    """
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise HTTPException(status.HTTP_411_LENGTH_REQUIRED, "Content-Length is required")
    if int(length) > max_bytes:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "upload is too large")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the files as multipart/form-data"
        )
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"malformed multipart body: {exc}"
        ) from exc


def safe_name(filename: str | None) -> str:
    """A file name with no directories or unsafe characters, short enough for any file system."""
    name = unicodedata.normalize("NFC", (filename or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name:
        raise invalid(("body", "files"), "a file has no usable name", filename)
    _, dot, suffix = name.rpartition(".")
    tail = f".{suffix}" if dot and len(suffix) <= _MAX_SUFFIX_CHARS else ""
    head = name[: len(name) - len(tail)][: MAX_NAME_CHARS - len(tail)]
    head = head.encode()[: MAX_NAME_BYTES - len(tail.encode())].decode(errors="ignore")
    return head + tail


def check_suffix(name: str) -> None:
    """Rejects file types ingestion does not read."""
    suffix = Path(name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        allowed = ", ".join(sorted(ALLOWED_SUFFIXES))
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"{name}: unsupported type {suffix or '(none)'}; allowed: {allowed}",
        )


def new_upload_dir(uploads_dir: Path, tenant: str) -> Path:
    """A fresh folder for one upload request."""
    folder = uploads_dir / _UNSAFE.sub("_", tenant) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def save_upload(upload: UploadFile, folder: Path, name: str, max_bytes: int) -> Path:
    """Copies the upload to folder/name in chunks; 413 when it passes max_bytes."""
    target = folder / name
    written = 0
    with target.open("xb") as out:
        while chunk := upload.file.read(_COPY_CHUNK):
            written += len(chunk)
            if written > max_bytes:
                out.close()
                shutil.rmtree(folder, ignore_errors=True)
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"{name} is larger than {max_bytes / 2**20:.1f} MiB",
                )
            out.write(chunk)
    return target
