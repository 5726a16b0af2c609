"""Tiny real PNG images for the fake image providers (no imaging library needed).

:func:`solid_png` encodes a solid-colour RGB image with the standard chunks (IHDR, IDAT, IEND)
and CRCs, so any PNG decoder reads it; :func:`prompt_colour` makes the colour a function of the
prompt, so a test can tell which prompt an image came from.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A ``width`` x ``height`` PNG (8-bit RGB) filled with ``rgb``."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    row = b"\x00" + bytes(rgb) * width  # filter type 0 per scanline
    pixels = zlib.compress(row * height)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def prompt_colour(prompt: str) -> tuple[int, int, int]:
    """A colour derived from ``prompt`` (the first three bytes of its SHA-256)."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


def read_png_header(data: bytes) -> tuple[int, int, tuple[int, int, int]]:
    """``(width, height, first pixel)`` of a PNG made by :func:`solid_png` (checks every CRC)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG: bad signature")
    offset = len(PNG_SIGNATURE)
    chunks: dict[bytes, bytes] = {}
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"not a PNG: bad CRC in {kind!r}")
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    first_row = zlib.decompress(chunks[b"IDAT"])[: 1 + 3 * width]
    return width, height, (first_row[1], first_row[2], first_row[3])
