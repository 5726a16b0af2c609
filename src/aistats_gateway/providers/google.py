"""The Gemini API: ``generateContent`` and ``streamGenerateContent?alt=sse`` with ``x-goog-api-key``."""

from __future__ import annotations

from urllib.parse import quote

from ..settings import ProviderConfig
from .base import UpstreamReply
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

    def url(self, model: str, stream: bool) -> str:
        method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        return self._models_url + quote(model, safe="-._~") + method

    async def send(self, fmt: str, body: bytes, *, stream: bool, model: str) -> UpstreamReply:
        """POST a ``generateContent`` body for ``model``."""
        headers = self._stream_headers if stream else self._headers
        return await self._client.post_for(self.config, self.url(model, stream), body, headers, stream=stream)
