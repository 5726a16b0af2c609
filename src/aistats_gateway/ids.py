"""Generation ids: ``gen_<ULID>``, and the per-surface body ids derived from them."""

from __future__ import annotations

from ulid import ULID

GENERATION_PREFIX = "gen_"
# Body ids a surface derives from the generation id; the lookup accepts any of them.
SURFACE_PREFIXES = ("gen_", "resp_", "msg_", "chatcmpl-")


def new_generation_id() -> str:
    """A new ``gen_<ULID>`` id (time-ordered, 26 Crockford base32 chars)."""
    return GENERATION_PREFIX + str(ULID())


def derive(generation_id: str, prefix: str) -> str:
    """The body id for a surface: ``derive("gen_01H…", "resp_") == "resp_01H…"``."""
    return prefix + generation_id[len(GENERATION_PREFIX) :]


def to_generation_id(any_id: str) -> str | None:
    """Map any derived id (``gen_``, ``resp_``, ``msg_``) back to ``gen_<ULID>``; None if not ours."""
    for prefix in SURFACE_PREFIXES:
        if any_id.startswith(prefix):
            ulid_text = any_id[len(prefix) :]
            if len(ulid_text) == 26 and ulid_text.isalnum():
                return GENERATION_PREFIX + ulid_text.upper()
            return None
    return None
