"""Knowledge-base search."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, SettingsDep
from api.errors import invalid
from api.schemas import SearchHitPublic, SearchResponse
from core.search import hybrid_search

router = APIRouter(prefix="/api", tags=["search"])


@router.get("/search", response_model=SearchResponse)
async def search(
    settings: SettingsDep,
    user: CurrentUser,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="The question.")],
    k: Annotated[int, Query(ge=1, le=500, description="Hits to return.")] = 5,
    mode: Annotated[Literal["fused", "dense", "sparse"], Query()] = "fused",
) -> SearchResponse:
    """Hybrid (dense + sparse, fused) hits for a query, with text, score, document and page."""
    if k > settings.search_k_max:
        raise invalid(("query", "k"), f"k must be at most {settings.search_k_max}", k)
    if not q.strip():
        raise invalid(("query", "q"), "q must not be blank", q)
    hits = await run_in_threadpool(hybrid_search, q, tenant=user, k=k, mode=mode)
    return SearchResponse(
        query=q,
        hits=[
            SearchHitPublic(
                text=hit.text,
                score=hit.score,
                document=hit.source,
                doc_id=hit.doc_id,
                title=hit.title,
                page=hit.pages[0] if hit.pages else None,
                pages=hit.pages,
                heading_path=hit.heading_path,
                language=hit.language,
            )
            for hit in hits
        ],
    )
