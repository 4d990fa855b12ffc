"""Where results and uploads live: folders under OCTAVIUS_HOME, or one fsspec URL for all."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from uuid import UUID

from fsspec.core import url_to_fs
from fsspec.spec import AbstractFileSystem

from core.settings import Settings, get_settings

logger = logging.getLogger(__name__)

RESULTS_BLOCK = "octavius-results"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_CHUNK = 1 << 20


def is_url(ref: str) -> bool:
    """Whether a file reference is a URL (`s3://…`, `file://…`) rather than a local path."""
    return bool(_URL.match(ref))


def uploads_location(settings: Settings) -> str:
    """Where uploads go: `<storage URL>/uploads`, or the local uploads folder."""
    if settings.storage_url:
        return f"{settings.storage_url}/uploads"
    # absolute(), not resolve(): no file system calls on every upload request.
    return str(settings.uploads_dir.absolute())


def results_location(settings: Settings) -> str:
    """Where Prefect's persisted results and cache records go: `<storage URL>/results`."""
    if settings.storage_url:
        return f"{settings.storage_url}/results"
    return str(settings.results_dir.resolve())


def filesystem(url: str, settings: Settings | None = None) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of a URL and the path inside it, with OCTAVIUS_STORAGE_OPTIONS."""
    settings = settings or get_settings()
    same_scheme = settings.storage_url and _scheme(settings.storage_url) == _scheme(url)
    options = settings.storage_options if same_scheme else {}
    fs, path = url_to_fs(url, **options)
    return fs, path


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def join(location: str, *parts: str) -> str:
    """A child of a local folder or a URL; parts must already be safe single names."""
    if is_url(location):
        return "/".join([location.rstrip("/"), *parts])
    return str(Path(location).joinpath(*parts))


def size_of(ref: str) -> int:
    """Size in bytes of a local file or a stored object."""
    if not is_url(ref):
        return Path(ref).stat().st_size
    fs, path = filesystem(ref)
    return int(fs.size(path))


def is_file(ref: str) -> bool:
    """Whether a local path or URL names an existing file (object)."""
    if not is_url(ref):
        return Path(ref).is_file()
    fs, path = filesystem(ref)
    return bool(fs.isfile(path))


def files_under(ref: str) -> list[str]:
    """URLs of the objects below a URL prefix, sorted, hidden names skipped."""
    fs, path = filesystem(ref)
    found = []
    for child in sorted(fs.find(path)):
        relative = PurePosixPath(child).relative_to(PurePosixPath(path.rstrip("/")))
        if not any(part.startswith(".") for part in relative.parts):
            found.append(fs.unstrip_protocol(child))
    return found


@dataclass(frozen=True)
class StoredFile:
    """One object below a URL prefix: its URL, path below the prefix, size and last change."""

    url: str
    parts: tuple[str, ...]
    size: int
    modified: datetime


def stored_files(location: str) -> list[StoredFile]:
    """Every object below a URL prefix with its size and modification time, sorted.

    Objects whose filesystem reports no modification time are left out: nothing decides on
    the age of what cannot be dated.
    """
    fs, path = filesystem(location)
    # A long-lived process (the served cleanup) must see objects others wrote since.
    fs.invalidate_cache(path)
    root = PurePosixPath(path.rstrip("/"))
    found = []
    for name, info in sorted(fs.find(path, detail=True).items()):
        parts = PurePosixPath(name).relative_to(root).parts
        if not parts or info.get("type", "file") != "file":
            continue
        modified = _modified_at(fs, name, info)
        if modified is None:
            logger.warning("%s has no modification time; left alone", name)
            continue
        url = join(location, *parts)
        found.append(StoredFile(url, parts, int(info.get("size") or 0), modified))
    return found


def _modified_at(fs: AbstractFileSystem, name: str, info: Mapping[str, Any]) -> datetime | None:
    """When an object last changed, in UTC, from its listing entry or else the filesystem."""
    # s3fs lists `LastModified`, the local filesystem `mtime`, gcsfs `updated`, adlfs
    # `last_modified`.
    for key in ("LastModified", "mtime", "updated", "last_modified"):
        if (when := _as_utc(info.get(key))) is not None:
            return when
    try:
        return _as_utc(fs.modified(name))
    except (NotImplementedError, OSError, ValueError):
        return None


def _as_utc(value: object) -> datetime | None:
    """A listing's timestamp (datetime, epoch seconds or ISO text) as an aware UTC datetime."""
    if isinstance(value, str):
        with suppress(ValueError):
            value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def content_sha256(ref: str) -> str:
    """Hex SHA-256 of a local file or a stored object, read in chunks."""
    digest = hashlib.sha256()
    with open_binary(ref) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def open_binary(ref: str, mode: str = "rb") -> Iterator[Any]:
    """A binary stream on a local file or a stored object."""
    if not is_url(ref):
        with Path(ref).open(mode) as stream:
            yield stream
        return
    fs, path = filesystem(ref)
    if "w" in mode and _is_local(fs):
        fs.makedirs(fs._parent(path), exist_ok=True)
    with fs.open(path, mode) as stream:
        yield stream


@contextmanager
def local_file(ref: str) -> Iterator[Path]:
    """A local path to the file: the path itself, or a temporary copy of a stored object.

    The copy keeps the object's name (parsers look at the suffix) and is removed afterwards.
    A missing object gives a path that does not exist, as a missing local file does, so
    callers report it the same way.
    """
    if not is_url(ref):
        yield Path(ref)
        return
    fs, path = filesystem(ref)
    if _is_local(fs):
        yield Path(path)
        return
    folder = Path(tempfile.mkdtemp(prefix="octavius-fetch-"))
    try:
        target = folder / (PurePosixPath(path).name or "object")
        with suppress(FileNotFoundError):
            fs.get_file(path, str(target))
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _is_local(fs: AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols


def remove_tree(location: str) -> None:
    """Deletes a local folder or every object under a URL prefix; missing is fine."""
    if not is_url(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    fs, path = filesystem(location)
    with suppress(FileNotFoundError):
        fs.rm(path, recursive=True)
    fs.invalidate_cache()


def result_storage_block(settings: Settings) -> Any | None:
    """A Prefect filesystem block on `<storage URL>/results`, or None for local results.

    `file://` URLs (a shared mount) get a LocalFileSystem block, which Prefect requires for
    local paths; other schemes a RemoteFileSystem with OCTAVIUS_STORAGE_OPTIONS.
    """
    if not settings.storage_url:
        return None
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem

    location = results_location(settings)
    fs, path = filesystem(location, settings)
    if _is_local(fs):
        return LocalFileSystem(basepath=path)
    return RemoteFileSystem(basepath=location, settings=dict(settings.storage_options))


def apply_result_storage(settings: Settings | None = None) -> UUID | None:
    """Makes `<storage URL>/results` the default result storage of the current Prefect server.

    Saves it as the block `octavius-results` (remote-file-system, or local-file-system for a
    `file://` URL) and sets it as the server's default, so every process using that server
    (served deployments, `prefect worker` flow runs, Dask workers, API replicas reading
    results) persists and finds results and cache records there. Without a storage URL
    nothing changes: results stay in local folders.
    """
    settings = settings or get_settings()
    block = result_storage_block(settings)
    if block is None:
        return None
    from prefect.client.orchestration import get_client

    block_id: UUID = block.save(RESULTS_BLOCK, overwrite=True)
    with get_client(sync_client=True) as client:
        client.update_server_default_result_storage(default_result_storage_block_id=block_id)
    logger.info("results and caches go to %s", results_location(settings))
    return block_id


def use_shared_storage() -> dict[str, str]:
    """prefect.yaml pull step: applies the storage URL before a worker's flow run starts.

    The step runs in the flow-run process with the worker's environment, so a worker started
    with plain `prefect worker start` and OCTAVIUS_STORAGE_URL uses the shared storage.
    """
    settings = get_settings()
    apply_result_storage(settings)
    return {"storage_url": settings.storage_url or ""}
