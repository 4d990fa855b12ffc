"""Saving uploaded files: safe names, bounded sizes, streamed to disk or to the storage URL."""

from __future__ import annotations

import re
import unicodedata
import uuid
from pathlib import Path

from fastapi import HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from api.errors import invalid
from core.storage import is_url, join, open_binary, remove_tree

ALLOWED_SUFFIXES = frozenset(
    {".pdf", ".docx", ".md", ".markdown", ".html", ".htm", ".txt", ".text"}
)
_UNSAFE = re.compile(r"[^\w.\- ]+")
_COPY_CHUNK = 1 << 20
MAX_NAME_CHARS = 120
# File systems allow 255 bytes per name, and \w keeps letters that take 3-4 bytes in UTF-8.
MAX_NAME_BYTES = 200
_MAX_SUFFIX_CHARS = 10
# Up to this many bytes per request go to a local disk on the event loop: writing them to the
# page cache takes less than the hop to a worker thread (and a burst of uploads would queue on
# the thread pool). Larger requests and object stores take a thread.
INLINE_SAVE_BYTES = 256 * 1024


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


def new_upload_dir(uploads_root: str | Path, tenant: str) -> str:
    """A fresh folder (or URL prefix) for one upload request, under the uploads location."""
    folder = join(str(uploads_root), _UNSAFE.sub("_", tenant), uuid.uuid4().hex)
    if not is_url(folder):
        Path(folder).mkdir(parents=True)
    return folder


def save_upload(upload: UploadFile, folder: str, name: str, max_bytes: int) -> str:
    """Copies the upload to folder/name in chunks; returns its path or URL; 413 past max_bytes.

    `name` must come from `safe_name`, so the target stays inside `folder`. On any failure the
    whole request folder is removed.
    """
    target = join(folder, name)
    written = 0
    try:
        # Local files are created exclusively; an object store has no such mode and the
        # folder is fresh.
        with open_binary(target, "wb" if is_url(target) else "xb") as out:
            while chunk := upload.file.read(_COPY_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise HTTPException(
                        status.HTTP_413_CONTENT_TOO_LARGE,
                        f"{name} is larger than {max_bytes / 2**20:.1f} MiB",
                    )
                out.write(chunk)
    except BaseException:
        remove_upload_dir(folder)
        raise
    return target


def _save_all(
    uploads_root: str, tenant: str, files: list[tuple[UploadFile, str]], max_bytes: int
) -> tuple[str, dict[str, str]]:
    folder = new_upload_dir(uploads_root, tenant)
    return folder, {save_upload(upload, folder, name, max_bytes): name for upload, name in files}


async def save_uploads(
    uploads_root: str, tenant: str, files: list[tuple[UploadFile, str]], max_bytes: int
) -> tuple[str, dict[str, str]]:
    """Saves one request's files, as (upload, safe name), in a fresh folder of the tenant.

    Returns the folder and each saved file's path or URL with its name; 413 when a file is
    larger than `max_bytes` (nothing is kept then).
    """
    size = sum(upload.size or 0 for upload, _ in files)
    if not is_url(uploads_root) and size <= INLINE_SAVE_BYTES:
        return _save_all(uploads_root, tenant, files, max_bytes)
    return await run_in_threadpool(_save_all, uploads_root, tenant, files, max_bytes)


def remove_upload_dir(folder: str) -> None:
    """Deletes one upload request's folder and whatever was saved in it."""
    remove_tree(folder)


def read_head(ref: str, size: int = 1024) -> bytes:
    """The first bytes of a saved upload."""
    with open_binary(ref) as stream:
        data: bytes = stream.read(size)
    return data


def write_upload_bytes(folder: str, name: str, data: bytes) -> str:
    """Saves small bytes (a policy) as folder/name; returns its path or URL."""
    target = join(folder, name)
    with open_binary(target, "wb") as out:
        out.write(data)
    return target
