"""The ASGI shell every generation endpoint shares: one generation per request, counted in
flight, and an unexpected exception answered as a 500 in the contract shape (traceback logged)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..ids import new_generation_id
from ..pipeline.generation import Generation
from ..state import AppState
from ..telemetry import bind_generation
from .asgi import Receive, Reply, Scope, Send
from .errors import GatewayError

log = logging.getLogger(__name__)

Handler = Callable[[Generation, Scope, Receive], Awaitable[Reply]]


async def serve_generation(
    state: AppState,
    surface: str,
    handle: Handler,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    anthropic: bool = False,
) -> None:
    """Run ``handle`` for a new generation of ``surface`` and send its reply."""
    metrics = state.metrics
    generation = Generation(new_generation_id(), surface, None, state.wallets, state.writer, metrics)
    bind_generation(generation)  # traces (off by default)
    metrics.in_flight += 1
    try:
        try:
            reply = await handle(generation, scope, receive)
        except Exception:  # a bug: answer 500 in the contract shape, keep the traceback in the log
            log.exception("unhandled error serving %s", scope.get("path"))
            error = GatewayError("server_error", "The gateway hit an internal error; it has been logged")
            generation.close("failed", error="server_error")
            reply = Reply.error(error, generation.id, anthropic=anthropic)
        metrics.response(surface, reply.status)
        await reply.send(send, receive)
    finally:
        metrics.in_flight -= 1
