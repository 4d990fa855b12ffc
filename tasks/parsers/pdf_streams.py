"""PDF decompression-bomb guard: measure every Flate stream's inflated size before PDFium opens it.

PDFium inflates a page's whole content stream into memory, so a few hundred kilobytes of Flate
data that inflate to gigabytes would take gigabytes of RAM. This guard walks the raw file (memory
mapped), inflates each candidate stream in small pieces without keeping the output, and refuses
the file as soon as one stream passes the limit. Memory stays at a few hundred kilobytes; time is
bounded by the limit (about 0.3 s per 256 MiB inflated).
"""

from __future__ import annotations

import mmap
import re
import zlib
from pathlib import Path

from core.models import FailureReason
from tasks.parsers import ParseError

MAX_INFLATED_STREAM_BYTES = 256 * 2**20
_STREAM_START = re.compile(rb"stream\r?\n")
_IN_PIECE = 64 * 2**10
_OUT_PIECE = 2**20


def check_inflated_streams(path: Path, limit: int = MAX_INFLATED_STREAM_BYTES) -> None:
    """Raise TOO_LARGE when a Flate stream of the PDF inflates to more than `limit` bytes."""
    with path.open("rb") as stream:
        if path.stat().st_size == 0:
            return
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for match in _STREAM_START.finditer(data):
                size = inflated_size(data, match.end(), limit)
                if size > limit:
                    raise ParseError(
                        FailureReason.TOO_LARGE,
                        f"PDF stream at byte {match.end()} inflates to more than "
                        f"{limit / 2**20:.0f} MiB: possible decompression bomb",
                    )


def inflated_size(data: mmap.mmap | bytes, start: int, limit: int) -> int:
    """Bytes the zlib stream at `start` inflates to, counted up to just past `limit`."""
    inflater = zlib.decompressobj()
    total = 0
    position = start
    try:
        while not inflater.eof and position < len(data) and total <= limit:
            pending = data[position : position + _IN_PIECE]
            position += _IN_PIECE
            while pending and total <= limit and not inflater.eof:
                total += len(inflater.decompress(pending, _OUT_PIECE))
                pending = inflater.unconsumed_tail
    except zlib.error:
        # Not Flate data (another filter, an uncompressed stream, "endstream"): not our concern.
        return total
    return total
