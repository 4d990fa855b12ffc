"""Hostile files for the fault tests: decompression bombs, page floods, binary "text"."""

from __future__ import annotations

import zlib
from pathlib import Path

_BLOCK = b" " * (16 * 2**20)


def _pdf(path: Path, objects: list[bytes]) -> Path:
    """Write objects 1..n as a PDF with a correct cross-reference table (object 1 = catalog)."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def flate_bomb(text: bytes, inflated_mb: int) -> bytes:
    """A valid zlib stream of `text` then `inflated_mb` MiB of spaces, made in well under a second.

    After a full flush a raw deflate compressor forgets its history, so the compressed form of
    one 16 MiB block of spaces can be repeated; only the Adler-32 trailer needs the whole data.
    """
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = raw.compress(text) + raw.flush(zlib.Z_FULL_FLUSH)
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = block.compress(_BLOCK) + block.flush(zlib.Z_FULL_FLUSH)
    repeats = inflated_mb // 16
    checksum = _adler32_of_run(zlib.adler32(text), ord(" "), repeats * len(_BLOCK))
    tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return b"\x78\xda" + head + piece * repeats + tail + checksum.to_bytes(4, "big")


def _adler32_of_run(start: int, byte: int, length: int) -> int:
    """Adler-32 continued over `length` copies of one byte, in closed form."""
    modulus = 65521
    low, high = start & 0xFFFF, start >> 16
    high = (high + length * low + byte * length * (length + 1) // 2) % modulus
    low = (low + length * byte) % modulus
    return (high << 16) | low


def make_flate_bomb_pdf(path: Path, inflated_mb: int = 4096) -> Path:
    """A one-page PDF whose content stream (a few MB) inflates to `inflated_mb` MiB."""
    stream = flate_bomb(b"BT /F1 12 Tf 72 720 Td (Hello bomb) Tj ET\n", inflated_mb)
    return _pdf(
        path,
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ],
    )


def make_page_flood_pdf(path: Path, pages: int = 5000) -> Path:
    """A small PDF with `pages` pages that all share one content stream."""
    content = b"BT /F1 12 Tf 72 720 Td (Same page again) Tj ET"
    first_page = 5
    kids = b" ".join(b"%d 0 R" % (first_page + n) for n in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> >>"
    )
    objects.extend([page] * pages)
    return _pdf(path, objects)


def make_binary_text(path: Path, size: int = 256 * 1024) -> Path:
    """A ".txt" file of pseudo-random bytes (not text in any encoding)."""
    data = bytearray()
    seed = 12345
    while len(data) < size:
        seed = (seed * 6364136223846793005 + 1442695040888963407) % 2**64
        data += seed.to_bytes(8, "little")
    path.write_bytes(bytes(data[:size]))
    return path
