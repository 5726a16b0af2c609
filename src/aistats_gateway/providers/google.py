"""The Gemini API: ``generateContent`` and ``streamGenerateContent?alt=sse`` with ``x-goog-api-key``."""

from __future__ import annotations

from urllib.parse import quote

from ..settings import ProviderConfig
from .base import UpstreamReply, UpstreamStatusError
from .credentials import redacted, without_header
from .http import UpstreamClient


class GoogleProvider:
    """Speaks the ``gemini`` format natively; the model id is part of the URL."""

    native_formats = frozenset({"gemini"})

    def __init__(self, config: ProviderConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client
        self._models_url = config.base_url.rstrip("/") + "/v1beta/models/"
        headers = {"content-type": "application/json", **config.headers}
        if config.api_key:
            headers["x-goog-api-key"] = config.api_key
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}
        self._byok_headers = without_header(self._headers, "x-goog-api-key")
        self._byok_stream_headers = without_header(self._stream_headers, "x-goog-api-key")

    def url(self, model: str, stream: bool, fmt: str = "gemini") -> str:
        """The endpoint for ``fmt``: ``gemini`` (generate content) or ``embeddings``."""
        if fmt == "embeddings":
            method = ":batchEmbedContents"
        else:
            method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        return self._models_url + quote(model, safe="-._~") + method

    async def send(
        self, fmt: str, body: bytes, *, stream: bool, model: str, credential: str | None = None
    ) -> UpstreamReply:
        """POST a ``generateContent`` (or, for ``embeddings``, ``batchEmbedContents``) body for ``model``."""
        if credential is None:
            headers = self._stream_headers if stream else self._headers
        else:
            base = self._byok_stream_headers if stream else self._byok_headers
            headers = {**base, "x-goog-api-key": credential}
        url = self.url(model, stream, fmt)
        try:
            return await self._client.post_for(self.config, url, body, headers, stream=stream)
        except UpstreamStatusError as failure:
            raise redacted(failure, credential, self.config.api_key) from None
