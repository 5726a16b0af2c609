"""The Anthropic Messages API: ``POST {base_url}/v1/messages`` with ``x-api-key``."""

from __future__ import annotations

from ..settings import ProviderConfig
from .base import UpstreamReply
from .credentials import AuthHeaders, post_redacted
from .http import UpstreamClient

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider:
    """Speaks the ``messages`` format natively (other formats are translated to it)."""

    native_formats = frozenset({"messages"})

    def __init__(self, config: ProviderConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client
        self._url = config.base_url.rstrip("/") + "/v1/messages"
        base = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION, **config.headers}
        self._auth = AuthHeaders(config, base, "x-api-key")

    async def send(
        self, fmt: str, body: bytes, *, stream: bool, model: str, credential: str | None = None
    ) -> UpstreamReply:
        """POST a Messages body (``stream`` is inside the body; the accept header follows it)."""
        headers = self._auth.headers(credential, stream=stream)
        return await post_redacted(
            self._client, self.config, self._url, body, headers, stream=stream, credential=credential
        )
