"""Plan a request: model id(s), variant and provider preferences → ordered provider candidates.

Semantics follow OpenRouter's provider routing: ``provider.order`` / ``only`` / ``ignore`` /
``allow_fallbacks`` / ``sort`` / ``max_price`` / ``require_parameters`` (parsed in
:mod:`.preferences`), the model variants ``:nitro`` (sort by throughput) and ``:floor`` (sort by
price), and the ``models`` array of fallback models tried after the primary model's candidates.

Order of candidates for one model:

* ``provider.order`` names go first, in that order; the others follow in the model's sort
  order (they are dropped when ``allow_fallbacks`` is false). The client's explicit order
  is kept even for providers whose circuit breaker is open.
* Otherwise the sort — the model's variant, else ``provider.sort``, else price — after the
  health split: candidates whose breaker is open go last (kept, not removed: they are still
  tried when everything else fails). Ties keep the cheaper, then the catalog's, order.

BYOK (docs/byok.md): ``plan(..., byok=names)`` takes the providers the caller's workspace has its
own key for. Those providers' routes are usable even when the gateway has no key of its own
(kept per model as ``keyless`` routes, out of every other workspace's plans), and they go first
unless the client gave ``provider.order``. ``is_available`` (``GET /v1/models``) stays
workspace-independent: it counts only routes the gateway can serve with its own keys.

The default is a deterministic "cheapest healthy first" instead of OpenRouter's randomised
price-weighted load balancing: the same request gets the same plan (testable, explainable in
a usage record), and the hot path draws no random numbers. Spreading load between equally
priced routes is left to the health split, which moves traffic off a failing provider.

Health is read through ``HealthView.snapshot`` only. ``allow()`` is not called here: a
half-open breaker counts every ``True`` it returns as an in-flight probe, so asking it for
candidates that are never attempted would use up the probe and keep the breaker half-open.

Everything that does not depend on the request — active routes per model sorted by price,
price sums, output-token limits, why inactive routes are out, and the plan of a plain request —
is computed once at start-up; a plain request (no ``provider``, no ``models``) costs a few dict
lookups plus one health snapshot per candidate when the model has more than one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..api.errors import GatewayError, invalid
from ..catalog import Catalog, ModelEntry, ProviderRoute
from ..money import format_usd
from ..providers.base import Provider
from .preferences import ProviderPreferences, parse_preferences
from .request import MAX_OUTPUT_FIELDS
from .request_features import used_parameters

# The model kind (catalog ``kind``) each surface serves, and the path that serves each kind.
SURFACE_KINDS: dict[str, str] = {
    "chat": "chat",
    "responses": "chat",
    "messages": "chat",
    "embeddings": "embeddings",
    "images": "images",
    "videos": "videos",
}
KIND_PATHS: dict[str, str] = {
    "chat": "POST /v1/chat/completions, /v1/responses or /v1/messages",
    "embeddings": "POST /v1/embeddings",
    "images": "POST /v1/images/generations",
    "videos": "POST /v1/videos",
}

# Model-id suffixes that pick a sort order (OpenRouter's dynamic variants).
VARIANTS: dict[str, str] = {"nitro": "throughput", "floor": "price"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to serve a request: the catalog model it bills as, a route, and its adapter."""

    model: ModelEntry
    route: ProviderRoute
    provider: Provider


@dataclass(frozen=True, slots=True)
class Plan:
    """Candidates in attempt order (never empty); ``allow_fallbacks`` False: try the first only."""

    candidates: tuple[Candidate, ...]
    allow_fallbacks: bool


class HealthView(Protocol):
    """What routing reads from the health tracker (``pipeline.health.HealthTracker``)."""

    def allow(self, provider: str, model: str) -> bool: ...

    def snapshot(self, provider: str, model: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Route:
    """An active route with what ordering and filtering read, computed once."""

    candidate: Candidate
    name: str  # provider name, lower-cased (preferences match names case-insensitively)
    provider: str  # health key, part 1: the configured provider name
    model: str  # health key, part 2: the provider's model id
    price: int  # input + output, nano-USD per 1M tokens


@dataclass(frozen=True, slots=True)
class _Model:
    entry: ModelEntry
    routes: tuple[_Route, ...]  # active routes, cheapest first, ties in catalog order
    plan: Plan | None  # a plain request's plan when no breaker is open; None: no active route
    output_limit: int  # the smallest max_output_tokens of the active routes
    inactive: tuple[str, ...]  # why each inactive route is out
    keyless: tuple[_Route, ...] = ()  # routes of configured providers without a key: BYOK only
    providers: frozenset[str] = frozenset()  # provider names of ``routes`` and ``keyless``


class Router:
    """Builds a :class:`Plan` per request from data precomputed per catalog model."""

    def __init__(self, catalog: Catalog, providers: dict[str, Provider], health: HealthView) -> None:
        self._health = health
        self._models: dict[str, _Model] = {entry.id: _prepare(entry, providers) for entry in catalog.all()}

    def is_available(self, model_id: str) -> bool:
        """Whether some configured, active provider serves ``model_id`` (variants allowed)."""
        model, _ = self._resolve(model_id)
        return model is not None and model.plan is not None

    def plan(self, body: dict[str, Any], surface: str, byok: Collection[str] = ()) -> Plan:
        """The ordered candidates for ``body`` (a ``chat``/``responses``/``messages`` request).

        ``byok``: providers the caller's workspace has its own key for (see the module doc).
        Raises 404 ``model_not_found`` (no requested model exists), 400 (a bad ``provider`` or
        ``models`` field) or 503 ``no_provider_available`` with the reasons nothing is left.
        """
        raw_preferences = body.get("provider")
        fallbacks = body.get("models")
        if raw_preferences is None and fallbacks is None:
            model_id = body.get("model")
            model = self._models.get(model_id) if isinstance(model_id, str) else None
            if (
                model is not None
                and model.plan is not None
                and model.entry.kind == SURFACE_KINDS[surface]
                and (not byok or model.providers.isdisjoint(byok))
            ):
                limit = _requested_output(body, surface)
                if limit is None or limit <= model.output_limit:
                    return self._healthy_first(model)
        return self._plan(body, surface, parse_preferences(raw_preferences), fallbacks, byok)

    # --- the general path -------------------------------------------------------------------

    def _plan(
        self,
        body: dict[str, Any],
        surface: str,
        preferences: ProviderPreferences,
        fallbacks: object,
        byok: Collection[str] = (),
    ) -> Plan:
        requested = self._requested_models(body, fallbacks if preferences.allow_fallbacks else None)
        _check_kinds(requested, surface)
        limit = _requested_output(body, surface)
        used: frozenset[str] | None = None
        if preferences.require_parameters:
            used = used_parameters(body, surface)
        groups: list[list[_Route]] = []
        seen: set[str] = set()
        for model, variant in requested:
            if model is None or model.entry.id in seen:
                continue
            seen.add(model.entry.id)
            routes = _routes(model, byok)
            kept = [r for r in routes if _rejection(r, preferences, limit, used) is None]
            if kept:
                ordered_group = self._order(kept, preferences, variant or preferences.sort)
                if byok and not preferences.order:  # the workspace's own keys first (stable)
                    ordered_group.sort(key=lambda r: r.provider not in byok)
                groups.append(ordered_group)
        if not groups:
            raise self._unavailable(requested, preferences, limit, used, byok)
        if preferences.partition == "none" and preferences.sort and not preferences.order:
            ordered = sorted((r for g in groups for r in g), key=self._sort_key(preferences.sort))
        else:
            ordered = [r for g in groups for r in g]
        return Plan(tuple(r.candidate for r in ordered), preferences.allow_fallbacks)

    def _requested_models(
        self, body: dict[str, Any], fallbacks: object
    ) -> list[tuple[_Model | None, str | None]]:
        """The primary model then the fallbacks, resolved, with each one's variant sort."""
        model_id = body.get("model")
        primary = self._resolve(model_id) if isinstance(model_id, str) else (None, None)
        ids: list[str] = []
        if fallbacks is not None:
            if not isinstance(fallbacks, list) or not all(isinstance(m, str) and m for m in fallbacks):
                raise invalid("'models' must be a list of model ids", param="models")
            ids = fallbacks
        resolved = [self._resolve(m) for m in ids]
        if primary[0] is None and all(model is None for model, _ in resolved):
            names = [f"'{m}'" for m in [model_id, *ids] if isinstance(m, str)]
            what = f"Model {names[0]} does not exist" if len(names) == 1 else "No requested model exists"
            if len(names) > 1:
                what += f" ({', '.join(names)})"
            raise GatewayError(
                "not_found_error",
                f"{what}. GET /v1/models lists the available models.",
                code="model_not_found",
                param="model",
            )
        unknown = [m for m, (model, _) in zip(ids, resolved, strict=True) if model is None]
        if unknown:
            raise invalid(
                f"'models' names a model that does not exist: '{unknown[0]}'. "
                "GET /v1/models lists the available models.",
                param="models",
            )
        return [primary, *resolved]

    def _resolve(self, model_id: str) -> tuple[_Model | None, str | None]:
        """The catalog model for ``model_id`` and the sort its variant suffix asks for."""
        model = self._models.get(model_id)
        if model is not None:
            return model, None
        base, sep, suffix = model_id.rpartition(":")
        sort = VARIANTS.get(suffix) if sep else None
        if sort is None:
            return None, None
        return self._models.get(base), sort

    # --- ordering ---------------------------------------------------------------------------

    def _healthy_first(self, model: _Model) -> Plan:
        """The precomputed plan, or a copy with open-breaker candidates moved last."""
        plan = model.plan
        assert plan is not None
        routes = model.routes
        if len(routes) == 1:
            return plan
        snapshot = self._health.snapshot
        if all(snapshot(r.provider, r.model).state != "open" for r in routes):
            return plan
        return Plan(tuple(r.candidate for r in self._sorted(list(routes), None)), True)

    def _order(
        self, routes: list[_Route], preferences: ProviderPreferences, sort: str | None
    ) -> list[_Route]:
        if not preferences.order:
            return self._sorted(routes, sort)
        rank = {name: i for i, name in enumerate(preferences.order)}
        first = sorted((r for r in routes if r.name in rank), key=lambda r: rank[r.name])
        rest = [r for r in routes if r.name not in rank]
        return first + self._sorted(rest, sort)

    def _sorted(self, routes: list[_Route], sort: str | None) -> list[_Route]:
        """``routes`` (cheapest first) in ``sort`` order after the health split; stable."""
        if len(routes) < 2:
            return routes
        return sorted(routes, key=self._sort_key(sort))

    def _sort_key(self, sort: str | None) -> Callable[[_Route], tuple[Any, ...]]:
        snapshot = self._health.snapshot

        if sort == "latency":

            def by_latency(r: _Route) -> tuple[Any, ...]:
                s = snapshot(r.provider, r.model)
                latency = s.latency_ewma_s
                return (s.state == "open", latency is None, latency or 0.0)

            return by_latency
        if sort == "throughput":

            def by_throughput(r: _Route) -> tuple[Any, ...]:
                s = snapshot(r.provider, r.model)
                tps = s.throughput_tps
                return (s.state == "open", tps is None, -(tps or 0.0))

            return by_throughput

        def by_price(r: _Route) -> tuple[Any, ...]:
            return (snapshot(r.provider, r.model).state == "open", r.price)

        return by_price

    # --- errors -----------------------------------------------------------------------------

    def _unavailable(
        self,
        requested: Sequence[tuple[_Model | None, str | None]],
        preferences: ProviderPreferences,
        limit: int | None,
        used: frozenset[str] | None,
        byok: Collection[str] = (),
    ) -> GatewayError:
        """503 naming, per requested model, why each of its routes is out."""
        parts: list[tuple[str, list[str]]] = []
        seen: set[str] = set()
        for model, _ in requested:
            if model is None or model.entry.id in seen:
                continue
            seen.add(model.entry.id)
            usable = {_keyless_reason(r.candidate.provider) for r in model.keyless if r.provider in byok}
            reasons = [r for r in model.inactive if r not in usable]
            for route in _routes(model, byok):
                reason = _rejection(route, preferences, limit, used)
                if reason is not None:
                    reasons.append(reason)
            parts.append((model.entry.id, list(dict.fromkeys(reasons))))
        if len(parts) == 1:
            model_id, reasons = parts[0]
            message = f"No provider is available for model '{model_id}': {'; '.join(reasons)}."
        else:
            message = "No provider is available for any requested model: " + " ".join(
                f"model '{model_id}': {'; '.join(reasons)}." for model_id, reasons in parts
            )
        return GatewayError("no_provider_available", message, code="no_provider_available")


def _prepare(entry: ModelEntry, providers: dict[str, Provider]) -> _Model:
    """The request-independent routing data of one catalog model."""
    routes: list[_Route] = []
    keyless: list[_Route] = []
    inactive: list[str] = []
    for route in entry.routes:
        provider = providers.get(route.provider)
        if provider is None:
            inactive.append(f"provider '{route.provider}' is not configured")
            continue
        prepared = _Route(
            Candidate(entry, route, provider),
            route.provider.lower(),
            route.provider,
            route.model,
            route.price.input + route.price.output,
        )
        if provider.config.active:
            routes.append(prepared)
        else:
            inactive.append(_keyless_reason(provider))
            keyless.append(prepared)
    routes.sort(key=lambda r: r.price)  # stable: equal prices keep catalog order
    plan = Plan(tuple(r.candidate for r in routes), True) if routes else None
    limit = min((r.candidate.route.max_output_tokens for r in routes), default=0)
    names = frozenset(r.provider for r in (*routes, *keyless))
    return _Model(entry, tuple(routes), plan, limit, tuple(dict.fromkeys(inactive)), tuple(keyless), names)


def _keyless_reason(provider: Provider) -> str:
    """Why a configured provider without a key is out (for callers without a BYOK key for it)."""
    env = provider.config.api_key_env
    hint = f"set {env}" if env else f"give providers.{provider.config.name}.api_key"
    return f"{hint} to activate provider '{provider.config.name}'"


def _routes(model: _Model, byok: Collection[str]) -> tuple[_Route, ...]:
    """The model's active routes plus, for a BYOK caller, its keyless routes that key serves."""
    if not byok or not model.keyless:
        return model.routes
    extra = [r for r in model.keyless if r.provider in byok]
    if not extra:
        return model.routes
    return tuple(sorted((*model.routes, *extra), key=lambda r: r.price))


def _requested_output(body: dict[str, Any], surface: str) -> int | None:
    """The output-token cap the request asks for, if any (validated earlier by the surface)."""
    for field in MAX_OUTPUT_FIELDS.get(surface, ()):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _rejection(
    route: _Route, preferences: ProviderPreferences, limit: int | None, used: frozenset[str] | None
) -> str | None:
    """Why this request may not use ``route``, or None when it may."""
    name = route.provider
    target = route.candidate.route
    if limit is not None and limit > target.max_output_tokens:
        return (
            f"provider '{name}' allows at most {target.max_output_tokens} output tokens, "
            f"fewer than the {limit} requested (a model's max_output_tokens can be raised in the config)"
        )
    if preferences.only is not None and route.name not in preferences.only:
        return f"provider '{name}' is not in provider.only"
    if route.name in preferences.ignore:
        return f"provider '{name}' is in provider.ignore"
    if preferences.order and not preferences.allow_fallbacks and route.name not in preferences.order:
        return f"provider '{name}' is not in provider.order and provider.allow_fallbacks is false"
    price = target.price
    if preferences.max_prompt_price is not None and price.input > preferences.max_prompt_price:
        return (
            f"provider '{name}' charges ${format_usd(price.input)} per 1M prompt tokens, "
            f"above provider.max_price.prompt (${format_usd(preferences.max_prompt_price)})"
        )
    if preferences.max_completion_price is not None and price.output > preferences.max_completion_price:
        return (
            f"provider '{name}' charges ${format_usd(price.output)} per 1M completion tokens, "
            f"above provider.max_price.completion (${format_usd(preferences.max_completion_price)})"
        )
    supported = target.supported_parameters
    if used is not None and supported is not None and not used <= supported:
        missing = ", ".join(sorted(used - supported))
        return f"provider '{name}' does not support {missing} (provider.require_parameters is true)"
    return None


def _check_kinds(requested: Sequence[tuple[_Model | None, str | None]], surface: str) -> None:
    """400 when a requested model is of another kind than ``surface`` serves (an embeddings
    model sent to chat, say), naming the path that serves it."""
    wanted = SURFACE_KINDS[surface]
    for model, _ in requested:
        if model is not None and model.entry.kind != wanted:
            kind = model.entry.kind
            raise invalid(
                f"Model '{model.entry.id}' is {'an' if kind[0] in 'aeiou' else 'a'} {kind} model; "
                f"it is served by {KIND_PATHS[kind]}",
                param="model",
            )
