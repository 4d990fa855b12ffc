"""Reindex logic without Prefect: embedding batches across documents."""

from __future__ import annotations

from core.models import Chunk, ChunkedDocument, DocumentFormat
from tasks.reindex import embedding_batches


def _doc(name: str, chunks: int) -> ChunkedDocument:
    return ChunkedDocument(
        doc_id=name,
        source=f"/{name}.md",
        format=DocumentFormat.MARKDOWN,
        content_hash="h",
        version="v",
        title=name,
        language="en",
        page_count=1,
        chunks=[
            Chunk(
                doc_id=name,
                chunk_index=i,
                text=f"{name} {i}",
                char_start=0,
                char_end=1,
                token_count=2,
            )
            for i in range(chunks)
        ],
        embed_texts=[f"{name} {i}" for i in range(chunks)],
    )


def test_embedding_batches_fill_across_documents_never_across_tenants() -> None:
    documents = [(_doc("a", 3), "t1"), (_doc("b", 1), "t2"), (_doc("c", 4), "t1")]
    batches = embedding_batches(documents, batch_size=4)
    assert [(b.tenant, len(b.texts)) for b in batches] == [("t1", 4), ("t1", 3), ("t2", 1)]
    # every chunk exactly once, each text at its slot
    slots = [slot for b in batches for slot in b.slots]
    assert sorted(slots) == sorted(
        (i, c) for i, (d, _) in enumerate(documents) for c in range(len(d.chunks))
    )
    for batch in batches:
        for (index, chunk), text in zip(batch.slots, batch.texts, strict=True):
            assert documents[index][0].embed_texts[chunk] == text
            assert documents[index][1] == batch.tenant
