"""Generation ids: ``gen_<ULID>``, and the per-surface body ids derived from them.

ULIDs are made here rather than with a library, because every request makes one on the hot
path: the random part comes from ``os.urandom`` read a few kilobytes at a time (one system call
per 256 ids: under load a ``getrandom`` call per request cost more than the rest of the id), and
the 26 characters from a table of every 2-character pair (13 lookups instead of ``b32encode``).
"""

from __future__ import annotations

import os
import threading
import time

GENERATION_PREFIX = "gen_"
# Body ids a surface derives from the generation id; the lookup accepts any of them.
SURFACE_PREFIXES = ("gen_", "resp_", "msg_")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_CHARS = frozenset(_CROCKFORD)
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]  # 10 bits -> 2 characters
_PAIR_SHIFTS = range(120, -10, -10)  # a ULID's 130-bit field as 13 pairs, most significant first
_RANDOM_BYTES = 10
_POOL_BYTES = 256 * _RANDOM_BYTES


class _RandomPool(threading.local):
    """Random bytes read ahead, per thread (no lock on the hot path, no two threads share bytes)."""

    def __init__(self) -> None:
        self.data = b""
        self.offset = 0


_pool = _RandomPool()


def _new_pool_after_fork() -> None:
    # A forked child must not hand out the bytes its parent has already used or will use.
    global _pool
    _pool = _RandomPool()


os.register_at_fork(after_in_child=_new_pool_after_fork)


def _random80() -> int:
    pool = _pool
    start = pool.offset
    if start + _RANDOM_BYTES > len(pool.data):
        pool.data, start = os.urandom(_POOL_BYTES), 0
    pool.offset = start + _RANDOM_BYTES
    return int.from_bytes(pool.data[start : start + _RANDOM_BYTES], "big")


def new_ulid() -> str:
    """A ULID: 48-bit millisecond time then 80 random bits, 26 Crockford base32 characters."""
    value = (time.time_ns() // 1_000_000) << 80 | _random80()
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


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
