"""Adapters for every provider reached through an OpenAI-shaped HTTP API.

One declarative table says, per provider type, which wire formats the provider speaks
natively and where each endpoint lives. ``openai`` and ``xai`` speak Chat Completions and
Responses; ``openai_compatible`` servers (vLLM, Ollama, llama.cpp, Groq, Together…) speak chat
only, so the pipeline translates other formats for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import PROVIDER_FORMATS, ProviderConfig
from .base import UpstreamReply
from .credentials import AuthHeaders, post_redacted
from .http import UpstreamClient


@dataclass(frozen=True, slots=True)
class OpenAIFlavor:
    """How one provider type exposes the OpenAI wire formats."""

    native_formats: frozenset[str]
    base_suffix: str = ""  # appended to the configured base_url
    paths: tuple[tuple[str, str], ...] = (("chat", "/chat/completions"), ("responses", "/responses"))
    # Endpoints that are not chat wire formats (never in ``native_formats``), by name.
    endpoints: tuple[tuple[str, str], ...] = (
        ("embeddings", "/embeddings"),
        ("images", "/images/generations"),
    )


FLAVORS: dict[str, OpenAIFlavor] = {
    provider_type: OpenAIFlavor(frozenset(PROVIDER_FORMATS[provider_type]))
    for provider_type in ("openai", "xai", "openai_compatible")
}


class OpenAILikeProvider:
    """Sends OpenAI-format bodies to one configured provider through the shared client."""

    def __init__(self, config: ProviderConfig, client: UpstreamClient) -> None:
        flavor = FLAVORS[config.type]
        self.config = config
        self.native_formats = flavor.native_formats & frozenset(config.formats or flavor.native_formats)
        base = config.base_url.rstrip("/") + flavor.base_suffix
        self._urls = {fmt: base + path for fmt, path in flavor.paths if fmt in flavor.native_formats}
        self._urls.update((name, base + path) for name, path in flavor.endpoints)
        self._client = client
        base_headers = {"content-type": "application/json", **config.headers}
        self._auth = AuthHeaders(config, base_headers, "authorization", "Bearer ")

    async def send(
        self, fmt: str, body: bytes, *, stream: bool, model: str, credential: str | None = None
    ) -> UpstreamReply:
        """POST ``body`` to this provider's endpoint for ``fmt`` (``chat`` or ``responses``)."""
        headers = self._auth.headers(credential, stream=stream)
        return await post_redacted(
            self._client, self.config, self._urls[fmt], body, headers, stream=stream, credential=credential
        )
