"""Provider adapters, built from the configured providers."""

from __future__ import annotations

from ..settings import ProviderConfig
from .base import Provider
from .http import UpstreamClient
from .openai_like import FLAVORS, OpenAILikeProvider


def build_providers(configs: dict[str, ProviderConfig], client: UpstreamClient) -> dict[str, Provider]:
    """One adapter per configured provider, keyed by its configured name."""
    providers: dict[str, Provider] = {}
    for name, config in configs.items():
        if config.type not in FLAVORS:
            raise ValueError(f"providers.{name}.type: no adapter for provider type {config.type!r}")
        providers[name] = OpenAILikeProvider(config, client)
    return providers
