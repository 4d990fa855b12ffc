"""Parse and chunk one document: the coarse unit of work that runs on a Dask worker."""

from __future__ import annotations

import hashlib
from typing import Any

from prefect import task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext

from core.models import ChunkedDocument, PlannedDocument
from core.settings import get_settings
from core.storage import local_file
from core.tokens import get_token_counter
from tasks.chunking import chunk_document, chunking_config, embedding_text
from tasks.parsing import parse_document
from tasks.planning import PIPELINE_VERSION


def parse_and_chunk(planned: PlannedDocument) -> ChunkedDocument:
    """Parses the file and cuts it into chunks sized for the model; raises ParseError."""
    settings = get_settings()
    with local_file(planned.file.path) as path:
        parsed = parse_document(
            path,
            doc_id=planned.file.doc_id,
            source=planned.file.source,
            max_bytes=int(settings.max_file_mb * 2**20),
            max_pages=settings.max_pages,
        )
    counter = get_token_counter(settings)
    chunks = chunk_document(parsed, chunking_config(settings), counter)
    return ChunkedDocument(
        doc_id=parsed.doc_id,
        source=parsed.source,
        format=parsed.format,
        content_hash=parsed.content_hash,
        version=planned.version,
        title=parsed.title,
        language=parsed.language,
        page_count=parsed.page_count,
        chunks=chunks,
        embed_texts=[embedding_text(chunk, parsed.title, counter) for chunk in chunks],
    )


def _document_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    planned: PlannedDocument = parameters["planned"]
    tenant: str = parameters["tenant"]
    key = f"parse|{tenant}|{planned.file.doc_id}|{planned.version}|{PIPELINE_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()


@task(
    name="parse-and-chunk",
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_document_cache_key),
    task_run_name="parse {planned.file.source}",
)
def parse_and_chunk_task(planned: PlannedDocument, tenant: str) -> ChunkedDocument:
    """Parses and chunks one document; cached per tenant, content, config and code version."""
    return parse_and_chunk(planned)
