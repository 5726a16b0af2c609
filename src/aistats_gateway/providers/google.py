"""The Gemini API: ``generateContent`` and ``streamGenerateContent?alt=sse`` with ``x-goog-api-key``."""

from __future__ import annotations

from urllib.parse import quote

from ..settings import ProviderConfig
from .base import UpstreamReply
from .credentials import AuthHeaders, post_redacted
from .http import UpstreamClient


class GoogleProvider:
    """Speaks the ``gemini`` format natively; the model id is part of the URL."""

    native_formats = frozenset({"gemini"})

    def __init__(self, config: ProviderConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client
        self._models_url = config.base_url.rstrip("/") + "/v1beta/models/"
        self._auth = AuthHeaders(
            config, {"content-type": "application/json", **config.headers}, "x-goog-api-key"
        )

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
        headers = self._auth.headers(credential, stream=stream)
        url = self.url(model, stream, fmt)
        return await post_redacted(
            self._client, self.config, url, body, headers, stream=stream, credential=credential
        )
