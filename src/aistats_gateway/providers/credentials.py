"""Per-request provider keys (BYOK) for the adapters: header dicts, and redacted failures.

An adapter builds its default header dicts once; a request carrying a workspace's own key gets a
copy of the dict without the configured auth header plus the BYOK one (one small dict per
request, only on that path). A provider's error body or headers may echo the key it was sent
("Incorrect API key provided: sk-…"): :func:`redacted` scrubs both the BYOK key and the
gateway's own before the failure travels on to error messages, usage records or logs.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..byok.redact import redact_bytes, redact_text
from .base import UpstreamStatusError


def without_header(headers: Mapping[str, str], name: str) -> dict[str, str]:
    """``headers`` minus ``name`` (any case): the base a per-request credential is added to."""
    return {key: value for key, value in headers.items() if key.lower() != name}


def redacted(
    failure: UpstreamStatusError, credential: str | None, configured: str | None
) -> UpstreamStatusError:
    """``failure`` with the keys scrubbed from its body and headers, marked when BYOK was used."""
    secrets = (credential, configured)
    failure.body = redact_bytes(failure.body, secrets)
    failure.headers = {name: redact_text(value, secrets) for name, value in failure.headers.items()}
    failure.byok = credential is not None
    return failure
