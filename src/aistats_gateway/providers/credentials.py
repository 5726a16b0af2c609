"""Provider keys for the adapters: the auth header of each request, and redacted failures.

Every adapter authenticates with one header (``authorization: Bearer …``, ``x-api-key``,
``x-goog-api-key``); :class:`AuthHeaders` builds its header dicts once, with the configured key,
and for a request carrying a workspace's own key (BYOK) a copy without the configured auth header
plus the BYOK one (one small dict per request, only on that path). A provider's error body or
headers may echo the key it was sent ("Incorrect API key provided: sk-…"): :func:`redacted`
scrubs both the BYOK key and the gateway's own before the failure travels on to error messages,
usage records or logs; :func:`post_redacted` is the POST every request-path adapter makes.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..byok.redact import redact_bytes, redact_text
from ..settings import ProviderConfig
from .base import UpstreamReply, UpstreamStatusError
from .http import UpstreamClient

SSE_ACCEPT = {"accept": "text/event-stream"}


def without_header(headers: Mapping[str, str], name: str) -> dict[str, str]:
    """``headers`` minus ``name`` (any case): the base a per-request credential is added to."""
    return {key: value for key, value in headers.items() if key.lower() != name}


class AuthHeaders:
    """An adapter's request headers: ``base`` plus the key in header ``name`` as ``scheme + key``.

    The configured key (``config.api_key``, when set) is used unless a request brings a
    workspace's own key. The returned dicts are shared: callers must not change them.
    """

    def __init__(self, config: ProviderConfig, base: Mapping[str, str], name: str, scheme: str = "") -> None:
        headers = dict(base)
        if config.api_key:
            headers[name] = scheme + config.api_key
        self._name = name
        self._scheme = scheme
        self._plain = headers
        self._stream = {**headers, **SSE_ACCEPT}
        self._byok_plain = without_header(headers, name)
        self._byok_stream = without_header(self._stream, name)

    def headers(self, credential: str | None = None, *, stream: bool = False) -> dict[str, str]:
        """The headers of one request: with ``credential`` (BYOK) in place of the configured key,
        and ``accept: text/event-stream`` when ``stream``."""
        if credential is None:
            return self._stream if stream else self._plain
        base = self._byok_stream if stream else self._byok_plain
        return {**base, self._name: self._scheme + credential}


async def post_redacted(
    client: UpstreamClient,
    config: ProviderConfig,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    stream: bool,
    credential: str | None,
) -> UpstreamReply:
    """POST through the shared client; a failure carries neither key (:func:`redacted`)."""
    try:
        return await client.post_for(config, url, body, headers, stream=stream)
    except UpstreamStatusError as failure:
        raise redacted(failure, credential, config.api_key) from None


def redacted(
    failure: UpstreamStatusError, credential: str | None, configured: str | None
) -> UpstreamStatusError:
    """``failure`` with the keys scrubbed from its body and headers, marked when BYOK was used."""
    secrets = (credential, configured)
    failure.body = redact_bytes(failure.body, secrets)
    failure.headers = {name: redact_text(value, secrets) for name, value in failure.headers.items()}
    failure.byok = credential is not None
    return failure
