"""Batch sizing for the embedding fan-out."""

from __future__ import annotations

import pytest

from tasks.embedding import batch_sizes


@pytest.mark.parametrize(
    ("total", "max_size", "slots", "expected"),
    [
        (0, 128, 2, []),  # nothing to embed
        (10, 128, 2, [5, 5]),  # a small run still uses both workers
        (1, 128, 2, [1]),  # never an empty batch
        (256, 128, 2, [128, 128]),  # exact fit
        (257, 128, 2, [65, 64, 64, 64]),  # one chunk over: four even batches, not 128+128+1
        (1100, 128, 2, [110] * 10),  # 9 batches of 128 would leave one worker idle at the end
        (1100, 128, 1, [123, 123, 122, 122, 122, 122, 122, 122, 122]),  # one worker: fewest
        (300, 128, 0, [100, 100, 100]),  # unknown workers count as one
    ],
)
def test_batch_sizes_cover_everything_evenly(
    total: int, max_size: int, slots: int, expected: list[int]
) -> None:
    sizes = batch_sizes(total, max_size, slots)
    assert sizes == expected
    assert sum(sizes) == total
    assert all(0 < size <= max_size for size in sizes)
