"""Raw-score fusion and term coverage of the research retrieval."""

from __future__ import annotations

from core.models import SearchHit
from tasks.research.retrieval import fuse_hits, term_coverage


def _hit(point: str, score: float) -> SearchHit:
    return SearchHit(
        point_id=point,
        score=score,
        text=f"text {point}",
        doc_id="d",
        source="/data/guide.html",
        title="Guide",
        pages=[],
        heading_path=[],
        chunk_index=int(point),
        language="en",
    )


def test_fuse_hits_orders_like_rrf_and_keeps_raw_scores() -> None:
    dense = [_hit("1", 0.8), _hit("2", 0.6)]
    sparse = [_hit("2", 14.0), _hit("3", 9.0)]
    fused = fuse_hits(dense, sparse, (1.0, 1.0), k=3)
    assert [p.chunk_index for p in fused] == [2, 1, 3]
    assert [(p.dense, p.sparse) for p in fused] == [(0.6, 14.0), (0.8, None), (None, 9.0)]
    assert fused[0].document == "guide.html"


def test_term_coverage_is_the_best_share_of_question_terms_in_one_text() -> None:
    question = "save netfilter rules after reboot"
    texts = ["netfilter rules are saved", "after a reboot", "nothing here"]
    # "save", "netfilter", "rule" of its 4 terms ("after" is a stopword; saved -> save)
    assert term_coverage(question, texts, "en") == 3 / 4
    assert term_coverage(question, [], "en") == 0.0
    assert term_coverage("the of and", texts, "en") == 0.0
