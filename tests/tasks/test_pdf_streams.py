"""The PDF decompression-bomb guard, on generated bombs and ordinary PDFs."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from core.models import FailureReason
from tasks.parsers import ParseError
from tasks.parsers.pdf_streams import check_inflated_streams, inflated_size
from tests.docgen import make_pdf
from tests.faults.hostile_docs import flate_bomb, make_flate_bomb_pdf


def test_flate_bomb_is_a_valid_zlib_stream() -> None:
    data = flate_bomb(b"head", 48)
    assert zlib.decompress(data) == b"head" + b" " * (48 * 2**20)


def test_inflated_size_counts_past_the_limit_only() -> None:
    data = flate_bomb(b"", 64)
    assert inflated_size(data, 0, limit=2**40) == 64 * 2**20
    assert 2**20 < inflated_size(data, 0, limit=2**20) <= 3 * 2**20


def test_inflated_size_of_data_that_is_not_flate_is_zero() -> None:
    assert inflated_size(b"BT (plain) Tj ET\nendstream", 0, limit=2**20) == 0


def test_bomb_pdf_refused_as_too_large(tmp_path: Path) -> None:
    path = make_flate_bomb_pdf(tmp_path / "bomb.pdf", inflated_mb=64)
    with pytest.raises(ParseError) as caught:
        check_inflated_streams(path, limit=16 * 2**20)
    assert caught.value.reason is FailureReason.TOO_LARGE
    assert "decompression bomb" in str(caught.value)


def test_ordinary_pdf_passes(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "ok.pdf", [["# Title", "Some text on a page."], ["More text."]])
    check_inflated_streams(path, limit=2**20)


def test_empty_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    check_inflated_streams(path)
