"""Batch planning for the embedding fan-out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.embedding import ChunkRange, plan_batches


def batch_sizes(batches: list[list[ChunkRange]]) -> list[int]:
    return [sum(hi - lo for _, lo, hi in batch) for batch in batches]


@pytest.mark.parametrize(
    ("sizes", "max_size", "slots", "expected"),
    [
        ([], 128, 2, []),  # nothing to embed
        ([0, 0], 128, 2, []),  # documents without chunks get no batch
        ([1] * 10, 128, 2, [5, 5]),  # a small run still uses both workers
        ([1], 128, 2, [1]),  # never an empty batch
        ([64] * 4, 128, 2, [128, 128]),  # exact fit
        ([300], 128, 2, [100, 100, 100]),  # a large document is cut evenly on its own
        ([50, 300, 20], 128, 2, [100, 100, 100, 70]),  # ... and the small ones around it pack
        ([1] * 1100, 128, 2, [110] * 10),  # 9 batches of 128 would idle a worker at the end
        ([1] * 300, 128, 0, [100, 100, 100]),  # unknown workers count as one
    ],
)
def test_plan_batches_sizes(
    sizes: list[int], max_size: int, slots: int, expected: list[int]
) -> None:
    assert batch_sizes(plan_batches(sizes, max_size, slots)) == expected


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=400), max_size=60),
    max_size=st.integers(min_value=8, max_value=256),
    slots=st.integers(min_value=0, max_value=8),
)
def test_plan_batches_cover_each_chunk_once_in_whole_documents(
    sizes: list[int], max_size: int, slots: int
) -> None:
    batches = plan_batches(sizes, max_size, slots)
    covered = sorted(
        (doc, chunk) for batch in batches for doc, lo, hi in batch for chunk in range(lo, hi)
    )
    assert covered == [(doc, chunk) for doc, size in enumerate(sizes) for chunk in range(size)]
    observed = batch_sizes(batches)
    assert all(0 < size <= max_size for size in observed)
    assert observed == sorted(observed, reverse=True)  # largest first
    for batch in batches:
        # A batch either holds whole documents or one part of a document over max_size.
        if any(hi - lo < sizes[doc] for doc, lo, hi in batch):
            assert len(batch) == 1 and sizes[batch[0][0]] > max_size


def test_plan_batches_cut_a_large_document_the_same_way_whatever_surrounds_it() -> None:
    """Its finished parts are cached by their texts: a re-run must cut them alike."""

    def parts_of_large(sizes: list[int], doc: int) -> list[tuple[int, int]]:
        return sorted(
            (lo, hi) for batch in plan_batches(sizes, 128, 2) for d, lo, hi in batch if d == doc
        )

    assert parts_of_large([40, 30, 500, 7], 2) == parts_of_large([500], 0)
