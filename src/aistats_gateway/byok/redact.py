"""Keep provider keys out of what the gateway shows or logs: error bodies, messages, headers."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

REDACTED = "[REDACTED]"
_MIN_SECRET_CHARS = 8  # shorter "keys" (test placeholders) are not worth scanning for


def _forms(secret: str) -> list[bytes]:
    """The byte forms a key can take in a provider's body: raw, and JSON-escaped."""
    raw = secret.encode()
    escaped = orjson.dumps(secret)[1:-1]
    return [raw] if escaped == raw else [raw, escaped]


def redact_bytes(data: bytes, secrets: Iterable[str | None]) -> bytes:
    """``data`` with every occurrence of each secret replaced by ``[REDACTED]``."""
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_CHARS:
            for form in _forms(secret):
                if form in data:
                    data = data.replace(form, REDACTED.encode())
    return data


def redact_text(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each secret replaced by ``[REDACTED]``."""
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_CHARS and secret in text:
            text = text.replace(secret, REDACTED)
    return text
