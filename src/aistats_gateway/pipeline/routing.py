"""Plan a request: model id → the ordered provider candidates that can serve it.

Plans are computed once at start-up from the catalog and the configured providers (both are
fixed for the life of the process), so the request path does one dict lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.errors import GatewayError
from ..catalog import Catalog, ModelEntry, ProviderRoute
from ..providers.base import Provider


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to serve a model: a catalog route and the adapter of its provider."""

    route: ProviderRoute
    provider: Provider


@dataclass(frozen=True, slots=True)
class Plan:
    model: ModelEntry
    candidates: tuple[Candidate, ...]


class Router:
    """Precomputed plans per model id; unknown and unavailable models raise the contract errors."""

    def __init__(self, catalog: Catalog, providers: dict[str, Provider]) -> None:
        self._plans: dict[str, Plan | GatewayError] = {}
        for model in catalog.all():
            self._plans[model.id] = self._plan(model, providers)

    @staticmethod
    def _plan(model: ModelEntry, providers: dict[str, Provider]) -> Plan | GatewayError:
        candidates = []
        missing: list[str] = []
        for route in model.routes:
            provider = providers.get(route.provider)
            if provider is None:
                missing.append(f"provider '{route.provider}' is not configured")
            elif not provider.config.active:
                env = provider.config.api_key_env
                hint = f"set {env}" if env else f"give providers.{route.provider}.api_key"
                missing.append(f"{hint} to activate provider '{route.provider}'")
            else:
                candidates.append(Candidate(route, provider))
        if candidates:
            # Cheapest first; ties keep catalog order (health-aware ordering comes with routing work).
            candidates.sort(key=lambda c: c.route.price.input + c.route.price.output)
            return Plan(model, tuple(candidates))
        return GatewayError(
            "no_provider_available",
            f"No provider is available for model '{model.id}': " + "; ".join(missing) + ".",
            code="no_provider_available",
        )

    def plan(self, model_id: str) -> Plan:
        """The plan for ``model_id``, or 404 ``model_not_found`` / 503 ``no_provider_available``."""
        plan = self._plans.get(model_id)
        if plan is None:
            raise GatewayError(
                "not_found_error",
                f"Model '{model_id}' does not exist. GET /v1/models lists the available models.",
                code="model_not_found",
                param="model",
            )
        if isinstance(plan, GatewayError):
            # A fresh exception each time: re-raising one instance would grow its traceback.
            raise GatewayError(plan.reason, plan.message, code=plan.code)
        return plan
