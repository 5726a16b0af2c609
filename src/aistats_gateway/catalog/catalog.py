"""The model catalog: built-in models shipped in ``catalog/data/*.yaml``, merged with the config.

Built once at start-up and read-only afterwards, so the request path only does dict lookups.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from ..money import PriceCard, format_usd
from ..settings import ConfigError, Settings, unix_timestamp, validate_models

DEFAULT_CONTEXT_LENGTH = 128_000
DEFAULT_MAX_OUTPUT_TOKENS = 4_096


@dataclass(frozen=True)
class ProviderRoute:
    """One provider that serves a model: its own model id, price card and limits."""

    provider: str
    model: str
    price: PriceCard
    context_length: int
    max_output_tokens: int
    # The request parameters it accepts (settings.ROUTE_PARAMETERS); None = not declared (all).
    supported_parameters: frozenset[str] | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A model as clients see it (``owner/model``), with the routes that can serve it, in order."""

    id: str
    name: str
    owned_by: str
    created: int
    context_length: int
    max_output_tokens: int
    routes: tuple[ProviderRoute, ...]
    kind: str = "chat"  # settings.MODEL_KINDS: which surface serves it

    @property
    def free(self) -> bool:
        return self.id.endswith(":free")

    def to_openai_model(self) -> dict[str, Any]:
        """The GET /v1/models entry. Pricing is the first route's (see :func:`pricing`)."""
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "name": self.name,
            "kind": self.kind,
            "context_length": self.context_length,
            "max_output_tokens": self.max_output_tokens,
            "pricing": pricing(self.routes[0].price),
            "providers": list(dict.fromkeys(route.provider for route in self.routes)),
        }


class Catalog:
    """Models by id."""

    def __init__(self, models: Mapping[str, ModelEntry]) -> None:
        self._models = dict(models)
        self._sorted = sorted(self._models.values(), key=lambda m: m.id)

    def get(self, model_id: str) -> ModelEntry | None:
        return self._models.get(model_id)

    def all(self) -> list[ModelEntry]:
        """Every model, sorted by id."""
        return list(self._sorted)

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._sorted)


def load_catalog(settings: Settings) -> Catalog:
    """The built-in catalog with ``settings.models`` merged over it (same id replaces).

    A config model that replaces a built-in one keeps the built-in ``name`` and ``created``
    unless it gives its own; its routes, prices and limits are its own.
    """
    providers = settings.providers.keys()
    builtin = {
        model_id: _entry(model_id, spec, None) for model_id, spec in load_builtin_models(providers).items()
    }
    configured = validate_models(settings.models, providers)
    merged = dict(builtin)
    for model_id, spec in configured.items():
        merged[model_id] = _entry(model_id, spec, builtin.get(model_id))
    return Catalog(merged)


def load_builtin_models(providers: Collection[str]) -> dict[str, dict]:
    """The validated ``models`` of every data file shipped in the package, in file-name order."""
    data_dir = resources.files(__package__).joinpath("data")
    files = sorted((f for f in data_dir.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
    models: dict[str, dict] = {}
    for data_file in files:
        where = f"catalog/data/{data_file.name}"
        try:
            doc = yaml.safe_load(data_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(where, f"invalid YAML: {exc}") from exc
        if not isinstance(doc, dict) or set(doc) - {"models"}:
            raise ConfigError(where, "a catalog data file holds one top-level key, 'models'")
        for model_id, spec in validate_models(doc.get("models"), providers, f"{where}: models").items():
            if model_id in models:
                raise ConfigError(f"{where}: models.{model_id}", "defined in more than one catalog data file")
            models[model_id] = spec
    return models


def _entry(model_id: str, spec: dict[str, Any], replaces: ModelEntry | None) -> ModelEntry:
    route_specs: list[dict[str, Any]] = spec["providers"]
    context_length = _model_limit(spec, route_specs, "context_length", DEFAULT_CONTEXT_LENGTH)
    max_output_tokens = _model_limit(spec, route_specs, "max_output_tokens", DEFAULT_MAX_OUTPUT_TOKENS)
    routes = tuple(
        ProviderRoute(
            provider=route["provider"],
            model=route["model"].strip(),
            price=_price_card(route["price"]),
            context_length=int(route.get("context_length", context_length)),
            max_output_tokens=int(route.get("max_output_tokens", max_output_tokens)),
            supported_parameters=_parameters(route.get("supported_parameters")),
        )
        for route in route_specs
    )
    if "created" in spec:
        created = unix_timestamp(spec["created"], f"models.{model_id}.created")
    else:
        created = replaces.created if replaces else 0
    name = spec.get("name") or (replaces.name if replaces else model_id)
    return ModelEntry(
        id=model_id,
        name=name.strip(),
        owned_by=model_id.split("/", 1)[0],
        created=created,
        context_length=context_length,
        max_output_tokens=max_output_tokens,
        routes=routes,
        kind=spec.get("kind") or (replaces.kind if replaces else "chat"),
    )


def _model_limit(spec: dict[str, Any], routes: list[dict[str, Any]], key: str, default: int) -> int:
    """The model's own limit, else the largest any route declares, else the default."""
    if key in spec:
        return int(spec[key])
    declared = [int(route[key]) for route in routes if key in route]
    return max(declared) if declared else default


def _parameters(names: list[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(names)


def _price_card(price: dict[str, Any]) -> PriceCard:
    return PriceCard.from_config(price)


def pricing(card: PriceCard) -> dict[str, Any]:
    """A card as GET /v1/models shows it: every meter's base price as a USD decimal string
    (token meters per 1M tokens, ``request`` / ``image`` / ``video_second`` per unit, unset
    meters at the price they fall back to), then ``tiers`` with the meters each overrides."""
    shown: dict[str, Any] = {meter: format_usd(nanos) for meter, nanos in card.rates().items()}
    shown["tiers"] = [
        {"when": dict(tier.when), **{meter: format_usd(nanos) for meter, nanos in tier.prices}}
        for tier in card.tiers
    ]
    return shown
