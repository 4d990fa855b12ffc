"""Which files an ingestion run must index, skip, report missing or prune."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from core.embedder import embedder_model_id
from core.models import (
    DocumentReport,
    DocumentStatus,
    FailureReason,
    PlannedDocument,
    SourceFile,
    StoredDocument,
)
from core.settings import Settings, get_settings
from core.storage import content_sha256, files_under, is_file, is_url, size_of
from core.store import get_store
from tasks.chunking import chunking_config
from tasks.parsing import file_sha256

# Bump when a change in parsing or chunking code must re-index unchanged files.
PIPELINE_VERSION = "1"
_NAMESPACE = uuid.UUID("6f1c7f0e-8d7a-4a58-9a43-0c2d7f3c1b5e")


class IngestPlan(BaseModel):
    """What one ingestion run will do."""

    to_index: list[PlannedDocument]
    unchanged: list[DocumentReport]
    rejected: list[DocumentReport]
    to_remove: list[StoredDocument]


def document_id(tenant: str, source: str) -> str:
    """Stable id of a tenant's document, from the name it is known by."""
    return str(uuid.uuid5(_NAMESPACE, f"{tenant}\x00{source}"))


def index_version(content_hash: str, chunking_fingerprint: str, model_id: str) -> str:
    """Fingerprint of everything that changes a document's points."""
    key = f"{content_hash}|{chunking_fingerprint}|{model_id}|{PIPELINE_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def discover_files(
    paths: Sequence[str], tenant: str, names: dict[str, str] | None = None
) -> tuple[list[SourceFile], list[DocumentReport]]:
    """Expands folders recursively; returns the files found and reports for missing paths."""
    names = names or {}
    found: dict[str, SourceFile] = {}
    missing: list[DocumentReport] = []
    for raw in paths:
        if is_url(raw):
            stored_files, gone = _discover_stored(raw, tenant, names)
            found.update((file.source, file) for file in stored_files)
            missing.extend(gone)
            continue
        path = Path(raw).expanduser()
        if path.is_dir():
            candidates = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            candidates = [path]
        else:
            source = names.get(raw, str(path.resolve()))
            missing.append(
                DocumentReport(
                    source=source,
                    doc_id=document_id(tenant, source),
                    status=DocumentStatus.FAILED,
                    reason=FailureReason.NOT_FOUND,
                    error=f"no such file or folder: {raw}",
                )
            )
            continue
        for candidate in candidates:
            resolved = str(candidate.resolve())
            source = names[raw] if candidate == path and raw in names else resolved
            found[source] = SourceFile(
                path=resolved,
                source=source,
                doc_id=document_id(tenant, source),
                size=candidate.stat().st_size,
            )
    return list(found.values()), missing


def _discover_stored(
    url: str, tenant: str, names: dict[str, str]
) -> tuple[list[SourceFile], list[DocumentReport]]:
    """A stored object, or the objects under a URL prefix, known by their upload name or URL.

    The URL stays the file's path: whoever parses it fetches a local copy.
    """
    if is_file(url):
        source = names.get(url, url)
        file = SourceFile(
            path=url, source=source, doc_id=document_id(tenant, source), size=size_of(url)
        )
        return [file], []
    try:
        children = files_under(url)
    except FileNotFoundError:
        children = []
    if not children:
        source = names.get(url, url)
        return [], [
            DocumentReport(
                source=source,
                doc_id=document_id(tenant, source),
                status=DocumentStatus.FAILED,
                reason=FailureReason.NOT_FOUND,
                error=f"no such object or prefix: {url}",
            )
        ]
    return [
        SourceFile(path=child, source=child, doc_id=document_id(tenant, child), size=size_of(child))
        for child in children
    ], []


def folders_of(paths: Sequence[str]) -> list[str]:
    """Resolved folders among the given paths, each ending with a separator."""
    return [str(Path(p).expanduser().resolve()) + os.sep for p in paths if Path(p).is_dir()]


def plan_ingestion(
    files: Sequence[SourceFile],
    stored: dict[str, StoredDocument],
    *,
    chunking_fingerprint: str,
    model_id: str,
    max_bytes: int,
    prune_folders: Sequence[str] = (),
) -> IngestPlan:
    """Splits files into new-or-changed, unchanged and rejected; finds documents to prune."""
    to_index: list[PlannedDocument] = []
    unchanged: list[DocumentReport] = []
    rejected: list[DocumentReport] = []
    for file in files:
        if file.size > max_bytes:
            rejected.append(
                DocumentReport(
                    source=file.source,
                    doc_id=file.doc_id,
                    status=DocumentStatus.FAILED,
                    reason=FailureReason.TOO_LARGE,
                    error=f"file is {file.size / 2**20:.1f} MiB; the limit is "
                    f"{max_bytes / 2**20:.1f} MiB",
                )
            )
            continue
        content_hash = content_sha256(file.path)
        version = index_version(content_hash, chunking_fingerprint, model_id)
        previous = stored.get(file.doc_id)
        if previous is not None and previous.version == version and not previous.mixed_versions:
            unchanged.append(
                DocumentReport(
                    source=file.source,
                    doc_id=file.doc_id,
                    status=DocumentStatus.UNCHANGED,
                    chunks=previous.chunk_count,
                )
            )
            continue
        to_index.append(
            PlannedDocument(
                file=file,
                content_hash=content_hash,
                version=version,
                replaces=previous is not None,
            )
        )
    present = {file.doc_id for file in files}
    to_remove = [
        doc
        for doc in stored.values()
        if doc.doc_id not in present and any(doc.source.startswith(f) for f in prune_folders)
    ]
    return IngestPlan(
        to_index=to_index, unchanged=unchanged, rejected=rejected, to_remove=to_remove
    )


def plan_file(path: Path, tenant: str, settings: Settings) -> PlannedDocument:
    """One file planned for indexing under its own path, whatever the store holds."""
    content_hash = file_sha256(path)
    source = str(path.resolve())
    return PlannedDocument(
        file=SourceFile(
            path=source,
            source=source,
            doc_id=document_id(tenant, source),
            size=path.stat().st_size,
        ),
        content_hash=content_hash,
        version=index_version(
            content_hash, chunking_config(settings).fingerprint(), embedder_model_id(settings)
        ),
    )


@task(name="plan-ingestion", cache_policy=NO_CACHE)
def plan_task(
    paths: list[str], tenant: str, prune: bool, names: dict[str, str] | None = None
) -> IngestPlan:
    """Discovers the files and compares them with what the store already holds."""
    settings: Settings = get_settings()
    files, missing = discover_files(paths, tenant, names)
    stored = get_store(settings).documents(tenant)
    plan = plan_ingestion(
        files,
        stored,
        chunking_fingerprint=chunking_config(settings).fingerprint(),
        model_id=embedder_model_id(settings),
        max_bytes=int(settings.max_file_mb * 2**20),
        prune_folders=folders_of(paths) if prune else (),
    )
    plan.rejected = missing + plan.rejected
    return plan
