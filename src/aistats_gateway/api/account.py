"""``GET /v1/credits``, ``GET /v1/key`` and ``GET /v1/generations?id=`` for the calling key."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..api.errors import GatewayError, error_response, invalid
from ..ids import new_generation_id, to_generation_id
from ..money import nanos_to_usd
from ..state import AppState
from .json import json_response


class AccountEndpoints:
    """Read-only views of the caller's wallet, key and generations."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def credits(self, request: Request) -> Response:
        try:
            principal = self._state.keys.authenticate(request.headers)
        except GatewayError as error:
            return error_response(error, new_generation_id())
        totals = await self._state.wallets.live_snapshot(principal.workspace_id)
        return json_response(
            {
                "object": "credits",
                "workspace_id": principal.workspace_id,
                "currency": "USD",
                "balance": nanos_to_usd(totals["balance"]),
                "reserved": nanos_to_usd(totals["reserved"]),
                "available": nanos_to_usd(totals["available"]),
                "total_granted": nanos_to_usd(totals["granted_total"]),
                "total_used": nanos_to_usd(totals["spent_total"]),
                "nanos": totals,
                # OpenRouter-compatible shape, for clients that already read it.
                "data": {
                    "total_credits": nanos_to_usd(totals["granted_total"]),
                    "total_usage": nanos_to_usd(totals["spent_total"]),
                },
            }
        )

    async def key(self, request: Request) -> Response:
        try:
            principal = self._state.keys.authenticate(request.headers)
        except GatewayError as error:
            return error_response(error, new_generation_id())
        usage = await self._state.store.key_usage(principal.kid)
        totals = await self._state.wallets.live_snapshot(principal.workspace_id)
        limits = await self._state.limiter.status(principal)
        total_limit = principal.limits.spend_total_nano
        return json_response(
            {
                "object": "key",
                "data": {
                    "kid": principal.kid,
                    "name": principal.key_name,
                    "workspace_id": principal.workspace_id,
                    # limits, and usage against them per window (docs/limits.md)
                    **limits,
                    # OpenRouter-compatible: the total spend limit and what is left of it, in USD.
                    "limit": nanos_to_usd(total_limit) if total_limit is not None else None,
                    "limit_remaining": _remaining_usd(limits),
                    "usage": {
                        "requests": usage["requests"],
                        "cost": nanos_to_usd(usage["cost_nano"]),
                        "cost_nanos": usage["cost_nano"],
                        "input_tokens": usage["input_tokens"],
                        "output_tokens": usage["output_tokens"],
                    },
                    "available_credits": nanos_to_usd(totals["available"]),
                    "is_free_tier": totals["granted_total"] == 0,
                },
            }
        )

    async def generation(self, request: Request) -> Response:
        try:
            principal = self._state.keys.authenticate(request.headers)
            requested = request.query_params.get("id")
            if not requested:
                raise invalid("Query parameter 'id' is required (gen_…, resp_… or msg_…)", param="id")
            generation_id = to_generation_id(requested)
            record = None
            if generation_id is not None:
                record = self._state.writer.pending(generation_id) or await self._state.store.get_generation(
                    generation_id
                )
            if record is None or record.workspace_id != principal.workspace_id:
                # Another workspace's generation is reported exactly like a missing one.
                raise GatewayError("not_found_error", f"Generation '{requested}' not found", param="id")
        except GatewayError as error:
            return error_response(error, new_generation_id())
        return json_response({"data": record.to_api()})

    def routes(self) -> list[Route]:
        return [
            Route("/v1/credits", self.credits, methods=["GET"]),
            Route("/v1/key", self.key, methods=["GET"]),
            Route("/v1/generations", self.generation, methods=["GET"]),
            Route("/v1/generation", self.generation, methods=["GET"]),
        ]


def _remaining_usd(limits: dict[str, Any]) -> float | None:
    total = limits["spend"]["total"]
    return nanos_to_usd(total["remaining_nanos"]) if total is not None else None
