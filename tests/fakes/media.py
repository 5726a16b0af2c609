"""A small but well-formed MP4 file for the fake video providers (ftyp, moov/mvhd, mdat boxes)."""

from __future__ import annotations

import struct


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def tiny_mp4(seconds: int = 4, marker: bytes = b"fake video") -> bytes:
    """An ISO-BMFF MP4: ``ftyp`` (isom), ``moov`` with a version-0 ``mvhd`` of ``seconds``, ``mdat``."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    timescale = 1000
    mvhd = _box(
        b"mvhd",
        bytes(4)  # version 0, flags
        + struct.pack(">IIII", 0, 0, timescale, seconds * timescale)
        + struct.pack(">IH", 0x00010000, 0x0100)  # rate 1.0, volume 1.0
        + bytes(10)
        + struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)  # unity matrix
        + bytes(24)
        + struct.pack(">I", 2),  # next track id
    )
    return ftyp + _box(b"moov", mvhd) + _box(b"mdat", marker * 64)


SAMPLE_MP4 = tiny_mp4()
