"""``POST /v1/chat/completions`` and ``POST /v1/responses``: the inference request path.

auth (memory) → parse → plan → reserve (memory) → attempt loop over candidates → reply,
settle, and queue the usage record; no database round trip anywhere on this path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping

from ..api.errors import GatewayError
from ..byok.cache import NO_CREDENTIALS
from ..byok.fee import NO_FEE, ByokFee
from ..formats.base import ResponseContext, Target
from ..formats.sse import SSEDecoder
from ..money import nanos_to_usd
from ..pipeline.attempts import success_headers
from ..pipeline.exchanges import Exchange, StreamTranslator, choose_exchange
from ..pipeline.generation import (
    Generation,
    close_cancelled,
    count_then_close_cancelled,
    estimate_usage,
)
from ..pipeline.health_report import report_failure, retry_after_s
from ..pipeline.limits import for_anthropic, limit_headers
from ..pipeline.request import InferenceRequest, parse_inference_request
from ..pipeline.routing import Plan
from ..pipeline.upstream_errors import to_gateway_error
from ..providers.base import UpstreamFailure, UpstreamReply, UpstreamStatusError, UpstreamTimeout
from ..state import AppState
from ..telemetry import attempt_started
from .asgi import Receive, Reply, Scope, Send, header_values, read_body
from .serve import serve_generation

INCOMPLETE_REASONS = frozenset({"length", "max_output_tokens", "max_tokens"})


def _reservation_amount(
    plan: Plan,
    request: InferenceRequest,
    body_bytes: int,
    byok: Mapping[str, str] = NO_CREDENTIALS,
    fee: ByokFee = NO_FEE,
) -> int:
    """Worst case over every candidate, so failover can never cost more than was held.

    A candidate the workspace has its own key for (``byok``) is billed only ``fee`` of its price.
    """
    worst = 0
    for candidate in plan.candidates:
        route = candidate.route
        max_output = request.max_output_tokens or route.max_output_tokens
        max_input = min(body_bytes, route.context_length)
        cost = route.price.worst_case(max_input, max_output)
        if byok and candidate.provider.config.name in byok:
            cost = fee.apply(cost)
        worst = max(worst, cost)
    return worst


class InferenceEndpoint:
    """The handler shared by the chat and responses surfaces (``surface`` picks the format)."""

    def __init__(self, state: AppState, surface: str) -> None:
        self._state = state
        self._surface = surface
        self._anthropic_errors = surface == "messages"

    def _headers(self, generation: Generation) -> dict[str, str]:
        """Headers of a successful reply, including the gateway's own time so far."""
        headers = success_headers(self._state.metrics, self._surface, generation)
        if generation.limit_ticket is not None:  # x-ratelimit-* (+ anthropic-ratelimit-*) of a limited key
            headers.update(limit_headers(generation, anthropic=self._anthropic_errors))
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app for this surface's POST route."""
        await serve_generation(
            self._state, self._surface, self.handle, scope, receive, send, anthropic=self._anthropic_errors
        )

    async def handle(self, generation: Generation, scope: Scope, receive: Receive) -> Reply:
        state = self._state
        try:
            generation.principal = state.keys.authenticate(
                header_values(scope, b"authorization", b"x-api-key")
            )
            raw = await read_body(receive)
            if state.writer.backlogged:  # the database is behind the traffic: hold intake
                await state.writer.wait_for_room()
            parsed = parse_inference_request(raw, self._surface)
            generation.model_id = parsed.model_id
            generation.streamed = parsed.stream
            # BYOK: the workspace's own provider keys (usually none: an empty mapping).
            byok = state.credentials.for_workspace(generation.principal.workspace_id)
            plan = state.router.plan(parsed.body, self._surface, byok)
            generation.price = plan.candidates[0].route.price
            reserve = _reservation_amount(plan, parsed, len(raw), byok, state.credentials.fee)
            await state.limiter.admit_generation(  # key limits + free tier (pipeline/limits.py)
                generation, parsed.model_id, parsed.body.get("models"), hold_nano=reserve
            )
            generation.reservation = await state.wallets.hold(
                generation.principal.workspace_id, reserve, generation.id
            )
            ctx = ResponseContext(
                generation.id, parsed.model_id, generation.created, parsed.body, parsed.wants_usage
            )
            return await self._attempts(generation, plan, parsed, ctx, raw, byok)
        except GatewayError as error:
            generation.close("failed", error=f"{error.reason}: {error.message}")
            if self._anthropic_errors:
                error = for_anthropic(error)  # a limit's 429 also names Anthropic's headers
            return Reply.error(error, generation.id, anthropic=self._anthropic_errors)

    async def _attempts(
        self,
        generation: Generation,
        plan: Plan,
        parsed: InferenceRequest,
        ctx: ResponseContext,
        raw: bytes,
        byok: Mapping[str, str] = NO_CREDENTIALS,
    ) -> Reply:
        """Try the plan's candidates in order until one answers (DESIGN.md: attempt loop).

        A candidate whose circuit is open is skipped; connect errors, timeouts, 429 and 5xx move
        on to the next candidate; a caller's 4xx ends the loop with the provider's message. At
        most ``routing.max_attempts`` providers are tried, and none after ``routing.deadline_s``.
        """
        routing = self._state.settings.routing
        health = self._state.health
        candidates = plan.candidates if plan.allow_fallbacks else plan.candidates[:1]
        deadline = generation.started + routing.deadline_s
        last_failure: UpstreamFailure | None = None
        tried = 0
        for candidate in candidates:
            if tried >= routing.max_attempts or time.perf_counter() > deadline:
                break
            provider, route = candidate.provider, candidate.route
            name = provider.config.name
            # Built before asking the breaker: a request this provider cannot take (a 400 from its
            # codec) must not use up a half-open probe.
            exchange = choose_exchange(self._surface, provider.native_formats, provider.config.type)
            upstream_body = exchange.upstream_body(
                parsed.body, Target(name, route.model, route.max_output_tokens), parsed.stream
            )
            if not health.allow(name, route.model):
                generation.skip(name, route.model, "circuit_open")
                continue
            tried += 1
            credential = byok.get(name) if byok else None  # the workspace's own key, billed the BYOK fee
            fee = self._state.credentials.fee if credential is not None else None
            generation.upstream_begin(name, route.model, route.price, candidate.model.id, fee)
            attempt_started(generation)  # traces (off by default)
            # Billing and the answer's `model` follow the model that serves (a `models` fallback).
            attempt_ctx = dataclasses.replace(ctx, model=candidate.model.id)
            try:
                reply = await provider.send(
                    exchange.upstream_format,
                    upstream_body,
                    stream=parsed.stream,
                    model=route.model,
                    credential=credential,
                )
                try:
                    if parsed.stream:
                        return await self._open_stream(generation, exchange, reply, attempt_ctx, raw)
                    return await self._complete(generation, exchange, reply, attempt_ctx, raw)
                except GatewayError as error:
                    if error.reason != "provider_error":
                        raise
                    # An answer the gateway cannot read (not JSON, wrong shape): the provider's fault.
                    raise UpstreamFailure(name, error.message) from error
            except UpstreamFailure as failure:
                status = failure.status if isinstance(failure, UpstreamStatusError) else None
                elapsed = generation.upstream_end(type(failure).__name__, status)
                report_failure(health, name, route.model, failure, elapsed)
                last_failure = failure
                if not failure.retryable:
                    break
        if last_failure is not None:
            raise to_gateway_error(last_failure)
        if tried == 0 and generation.attempts:
            wait = retry_after_s(health, [(a.provider, a.upstream_model) for a in generation.attempts])
            raise GatewayError(
                "no_provider_available",
                f"Every provider for '{parsed.model_id}' is failing (circuit open); retry in {wait} s.",
                code="circuit_open",
                retry_after=wait,
            )
        raise GatewayError(
            "timeout_error", f"No attempt could start within the {routing.deadline_s:g} s deadline"
        )

    async def _complete(
        self,
        generation: Generation,
        exchange: Exchange,
        reply: UpstreamReply,
        ctx: ResponseContext,
        raw: bytes,
    ) -> Reply:
        try:
            data = await reply.read()
        finally:
            reply.release()
        completed = exchange.read(data, ctx)  # an unreadable answer fails this attempt
        elapsed = generation.upstream_end("ok", reply.status)
        generation.mark_first_byte()
        self._state.health.record_success(
            generation.provider or "",
            generation.upstream_model or "",
            latency_s=elapsed,
            output_tokens=completed.usage.output_tokens if completed.usage else 0,
        )
        usage = completed.usage or await estimate_usage(raw, completed.output_text)
        cost = generation.cost_of(usage)
        payload = exchange.finalize(completed, ctx, nanos_to_usd(cost))
        status = "incomplete" if completed.finish_reason in INCOMPLETE_REASONS else "completed"
        generation.close(
            status,
            usage=usage,
            cost=cost,
            finish_reason=completed.finish_reason,
            usage_estimated=completed.usage is None,
        )
        return Reply.json(payload, self._headers(generation))

    async def _open_stream(
        self,
        generation: Generation,
        exchange: Exchange,
        reply: UpstreamReply,
        ctx: ResponseContext,
        raw: bytes,
    ) -> Reply:
        """Read until the first client frame exists, so failures before it can still fail over."""
        translator = exchange.translator(ctx)
        decoder = SSEDecoder()
        chunks = reply.chunks.__aiter__()
        first: list[bytes] = translator.start()
        produced = False
        try:
            while not produced:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    raise UpstreamFailure(
                        generation.provider or "provider", "the stream ended before any event"
                    ) from None
                for event in decoder.feed(chunk):
                    frames = translator.feed(event)
                    produced = produced or bool(frames)
                    first.extend(frames)
        except BaseException:
            reply.release()
            raise
        generation.upstream_end("ok", reply.status)
        generation.mark_first_byte()
        body = self._relay(generation, translator, decoder, chunks, reply, first, raw)
        return Reply.sse(body, self._headers(generation))

    def _stream_health(self, generation: Generation, failure: Exception | None, output_tokens: int) -> None:
        """Tell the health tracker how a stream that had started ended."""
        provider, model = generation.provider or "", generation.upstream_model or ""
        started = generation.serving_started or generation.started
        elapsed = time.perf_counter() - started
        health = self._state.health
        if failure is None:
            ttft = generation.first_byte - started if generation.first_byte else None
            health.record_success(
                provider, model, latency_s=elapsed, ttft_s=ttft, output_tokens=output_tokens
            )
        elif isinstance(failure, UpstreamFailure):
            kind = "timeout" if isinstance(failure, UpstreamTimeout) else "dropped"
            health.record_failure(provider, model, kind=kind, latency_s=elapsed)
        else:
            health.record_failure(provider, model, kind="server_error")

    async def _relay(
        self,
        generation: Generation,
        translator: StreamTranslator,
        decoder: SSEDecoder,
        chunks: AsyncIterator[bytes],
        reply: UpstreamReply,
        first: list[bytes],
        raw: bytes,
    ) -> AsyncIterator[bytes]:
        """Relay the rest of the stream event by event; settle and record however it ends."""
        try:
            for frame in first:
                yield frame
            async for chunk in chunks:
                for event in decoder.feed(chunk):
                    for frame in translator.feed(event):
                        yield frame
            for event in decoder.flush():
                for frame in translator.feed(event):
                    yield frame
            usage = translator.usage or await estimate_usage(raw, translator.generated_text())
            self._stream_health(generation, None, usage.output_tokens)
            cost = generation.cost_of(usage)
            final = translator.finish(usage, nanos_to_usd(cost))
            status = "incomplete" if translator.finish_reason in INCOMPLETE_REASONS else "completed"
            generation.close(
                status,
                usage=usage,
                cost=cost,
                finish_reason=translator.finish_reason,
                usage_estimated=translator.usage is None,
            )
            for frame in final:
                yield frame
        except (UpstreamFailure, GatewayError) as exc:
            error = to_gateway_error(exc) if isinstance(exc, UpstreamFailure) else exc
            self._stream_health(generation, exc, 0)
            # The provider failed mid-stream: a failed attempt is never billed.
            generation.close(
                "failed", finish_reason=translator.finish_reason, error=f"{error.reason}: {error.message}"
            )
            for frame in translator.fail(error):
                yield frame
        finally:
            reply.release()
            if not generation.closed:
                self._stream_health(generation, None, 0)
                # The client went away mid-stream: the provider's tokens were generated and are
                # billed; counted by the gateway when the provider was cut off before reporting.
                # This block may run while the task is being cancelled, so any counting happens
                # in a task of its own.
                if translator.usage is not None:
                    close_cancelled(generation, translator.usage, translator.finish_reason, estimated=False)
                else:
                    self._state.background.add(
                        asyncio.create_task(
                            count_then_close_cancelled(generation, raw, translator.generated_text())
                        )
                    )
