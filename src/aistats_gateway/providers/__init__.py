"""Provider adapters, built from the configured providers: one declarative table per type."""

from __future__ import annotations

from collections.abc import Callable

from ..settings import ProviderConfig
from .anthropic import AnthropicProvider
from .base import Provider
from .google import GoogleProvider
from .http import UpstreamClient
from .openai_like import FLAVORS, OpenAILikeProvider

ADAPTERS: dict[str, Callable[[ProviderConfig, UpstreamClient], Provider]] = {
    **{provider_type: OpenAILikeProvider for provider_type in FLAVORS},
    "anthropic": AnthropicProvider,
    "google": GoogleProvider,
}


def build_providers(configs: dict[str, ProviderConfig], client: UpstreamClient) -> dict[str, Provider]:
    """One adapter per configured provider, keyed by its configured name."""
    providers: dict[str, Provider] = {}
    for name, config in configs.items():
        adapter = ADAPTERS.get(config.type)
        if adapter is None:
            raise ValueError(f"providers.{name}.type: no adapter for provider type {config.type!r}")
        providers[name] = adapter(config, client)
    return providers
