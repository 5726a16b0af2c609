"""Generation ids: ``gen_<ULID>``, and the per-surface body ids derived from them.

ULIDs are made here rather than with a library: one ``urandom`` call, one integer and one
base32 translation (~1 µs), because every request makes one on the hot path.
"""

from __future__ import annotations

import base64
import os
import time

GENERATION_PREFIX = "gen_"
# Body ids a surface derives from the generation id; the lookup accepts any of them.
SURFACE_PREFIXES = ("gen_", "resp_", "msg_")

_RFC4648 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = bytes.maketrans(_RFC4648, _CROCKFORD)
_CROCKFORD_CHARS = frozenset(_CROCKFORD.decode())


def new_ulid() -> str:
    """A ULID: 48-bit millisecond time then 80 random bits, 26 Crockford base32 characters."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    # 160 bits = 32 base32 digits; the ULID's 130-bit field is the last 26 of them.
    return base64.b32encode(value.to_bytes(20, "big")).translate(_TO_CROCKFORD)[6:].decode()


def new_generation_id() -> str:
    """A new ``gen_<ULID>`` id (time-ordered, 26 Crockford base32 chars)."""
    return GENERATION_PREFIX + new_ulid()


def derive(generation_id: str, prefix: str) -> str:
    """The body id for a surface: ``derive("gen_01H…", "resp_") == "resp_01H…"``."""
    return prefix + generation_id[len(GENERATION_PREFIX) :]


def to_generation_id(any_id: str) -> str | None:
    """Map any derived id (``gen_``, ``resp_``, ``msg_``) back to ``gen_<ULID>``; None if not ours."""
    for prefix in SURFACE_PREFIXES:
        if any_id.startswith(prefix):
            ulid_text = any_id[len(prefix) :].upper()
            if len(ulid_text) == 26 and _CROCKFORD_CHARS.issuperset(ulid_text):
                return GENERATION_PREFIX + ulid_text
            return None
    return None
