"""Model catalog and price cards; the built-in models live in ``data/*.yaml``."""

from .catalog import Catalog, ModelEntry, ProviderRoute, load_builtin_models, load_catalog

__all__ = ["Catalog", "ModelEntry", "ProviderRoute", "load_builtin_models", "load_catalog"]
