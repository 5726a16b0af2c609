"""The Anthropic Messages API: ``POST {base_url}/v1/messages`` with ``x-api-key``."""

from __future__ import annotations

from ..settings import ProviderConfig
from .base import UpstreamReply, UpstreamStatusError
from .credentials import redacted, without_header
from .http import UpstreamClient

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider:
    """Speaks the ``messages`` format natively (other formats are translated to it)."""

    native_formats = frozenset({"messages"})

    def __init__(self, config: ProviderConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client
        self._url = config.base_url.rstrip("/") + "/v1/messages"
        headers = {
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            **config.headers,
        }
        if config.api_key:
            headers["x-api-key"] = config.api_key
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}
        self._byok_headers = without_header(self._headers, "x-api-key")
        self._byok_stream_headers = without_header(self._stream_headers, "x-api-key")

    async def send(
        self, fmt: str, body: bytes, *, stream: bool, model: str, credential: str | None = None
    ) -> UpstreamReply:
        """POST a Messages body (``stream`` is inside the body; the accept header follows it)."""
        if credential is None:
            headers = self._stream_headers if stream else self._headers
        else:
            base = self._byok_stream_headers if stream else self._byok_headers
            headers = {**base, "x-api-key": credential}
        try:
            return await self._client.post_for(self.config, self._url, body, headers, stream=stream)
        except UpstreamStatusError as failure:
            raise redacted(failure, credential, self.config.api_key) from None
