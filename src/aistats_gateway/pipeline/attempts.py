"""A generic attempt loop with failover, for endpoints whose upstream call is one whole reply
(embeddings, images…); chat, responses and messages keep their own loop in ``api/inference.py``
because streams fail over differently.

Same rules as the chat loop (DESIGN.md: attempt loop): candidates in plan order, a candidate whose
circuit is open is skipped, connect errors / timeouts / 429 / 5xx / unreadable answers move on to
the next candidate, a caller's 4xx ends the loop with the provider's message, at most
``routing.max_attempts`` providers are tried and none after ``routing.deadline_s``. A candidate
whose provider the workspace has its own key for (BYOK) is called with that key and billed the
BYOK fee; ``api/whole_reply.py`` runs the whole request around this loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..api.errors import GatewayError
from ..byok.cache import NO_CREDENTIALS
from ..byok.fee import NO_FEE, ByokFee
from ..metrics import Metrics
from ..providers.base import UpstreamFailure, UpstreamStatusError
from ..telemetry import attempt_started
from .generation import Generation
from .health import HealthTracker
from .health_report import report_failure, retry_after_s
from .routing import Candidate, Plan
from .upstream_errors import to_gateway_error

P = TypeVar("P")
T = TypeVar("T")


class Unsuitable(Exception):
    """A candidate that cannot take this request at all (e.g. token-id input for Gemini).

    Raised by ``prepare``: the candidate is skipped without a call; when every candidate is
    unsuitable the request ends with the first one's error: ``reason`` ``validation_error`` (400,
    code ``unsupported_input``) when the request asks what the providers cannot do, or
    ``no_provider_available`` (503) when the configuration routes the model to a provider that
    cannot serve it.
    """

    def __init__(
        self, outcome: str, message: str, *, param: str | None = None, reason: str = "validation_error"
    ) -> None:
        super().__init__(message)
        self.outcome = outcome  # recorded as the skipped attempt's outcome
        self.message = message
        self.param = param
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Upstream:
    """One attempt's target: a candidate, and the workspace's own key for its provider (BYOK)."""

    candidate: Candidate
    credential: str | None = None  # None: the gateway's configured key

    async def post(self, fmt: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` to the candidate's ``fmt`` endpoint; the status and the whole reply body."""
        candidate = self.candidate
        reply = await candidate.provider.send(
            fmt, body, stream=False, model=candidate.route.model, credential=self.credential
        )
        try:
            data = await reply.read()
        finally:
            reply.release()
        return reply.status, data


@dataclass(slots=True)
class Answer(Generic[T]):
    """What a successful call produced, and the provider's HTTP status."""

    value: T
    status: int


async def attempt_candidates(
    *,
    generation: Generation,
    plan: Plan,
    health: HealthTracker,
    max_attempts: int,
    deadline_s: float,
    prepare: Callable[[Candidate], P],
    call: Callable[[Upstream, P], Awaitable[Answer[T]]],
    credentials: Mapping[str, str] = NO_CREDENTIALS,
    byok_fee: ByokFee = NO_FEE,
) -> T:
    """Try ``plan``'s candidates until one answers; return what ``call`` read from it.

    ``prepare`` builds the upstream request for a candidate before the breaker is asked (so a
    request a provider cannot take never uses up a half-open probe) and may raise
    :class:`Unsuitable`. ``call`` sends it and reads the reply; it raises
    :class:`UpstreamFailure`, or ``GatewayError("provider_error")`` for an answer it cannot read
    (which fails this attempt over like a provider failure). ``credentials``: the workspace's
    own keys by provider name; an attempt using one is billed ``byok_fee`` of the list price.
    """
    candidates = plan.candidates if plan.allow_fallbacks else plan.candidates[:1]
    deadline = generation.started + deadline_s
    last_failure: UpstreamFailure | None = None
    unsuitable: list[Unsuitable] = []
    tried = 0
    for candidate in candidates:
        if tried >= max_attempts or time.perf_counter() > deadline:
            break
        name, model = candidate.provider.config.name, candidate.route.model
        try:
            prepared = prepare(candidate)
        except Unsuitable as reason:
            generation.skip(name, model, reason.outcome)
            unsuitable.append(reason)
            continue
        if not health.allow(name, model):
            generation.skip(name, model, "circuit_open")
            continue
        tried += 1
        credential = credentials.get(name) if credentials else None
        fee = byok_fee if credential is not None else None
        generation.upstream_begin(name, model, candidate.route.price, candidate.model.id, fee)
        attempt_started(generation)  # traces (off by default)
        try:
            try:
                answer = await call(Upstream(candidate, credential), prepared)
            except GatewayError as error:
                if error.reason != "provider_error":
                    raise
                raise UpstreamFailure(name, error.message) from error
        except UpstreamFailure as failure:
            status = failure.status if isinstance(failure, UpstreamStatusError) else None
            elapsed = generation.upstream_end(type(failure).__name__, status)
            report_failure(health, name, model, failure, elapsed)
            last_failure = failure
            if not failure.retryable:
                break
            continue
        elapsed = generation.upstream_end("ok", answer.status)
        generation.mark_first_byte()
        health.record_success(name, model, latency_s=elapsed)
        return answer.value
    if last_failure is not None:
        raise to_gateway_error(last_failure)
    if tried == 0 and unsuitable and len(unsuitable) == len(generation.attempts):
        first = unsuitable[0]
        code = "unsupported_input" if first.reason == "validation_error" else first.reason
        raise GatewayError(first.reason, first.message, param=first.param, code=code)
    if tried == 0 and generation.attempts:
        wait = retry_after_s(health, [(a.provider, a.upstream_model) for a in generation.attempts])
        reasons = "; ".join(dict.fromkeys(u.message for u in unsuitable))
        extra = f" (the others cannot take this request: {reasons})" if reasons else ""
        raise GatewayError(
            "no_provider_available",
            f"Every provider for '{generation.model_id}' that can serve this request is failing "
            f"(circuit open){extra}; retry in {wait} s.",
            code="circuit_open",
            retry_after=wait,
        )
    raise GatewayError("timeout_error", f"No attempt could start within the {deadline_s:g} s deadline")


def success_headers(metrics: Metrics, surface: str, generation: Generation) -> dict[str, str]:
    """Headers of a successful reply: generation id, attempts, the gateway's own time, provider."""
    overhead_s = generation.overhead_s()
    metrics.gateway_overhead(surface, overhead_s)
    overhead_ms = f"{overhead_s * 1000:.3f}"
    headers = {
        "x-generation-id": generation.id,
        "x-aistats-attempts": str(len(generation.attempts)),
        "x-aistats-overhead-ms": overhead_ms,
        "server-timing": f"gateway;dur={overhead_ms}, upstream;dur={generation.upstream_s * 1000:.3f}",
    }
    if generation.provider:
        headers["x-aistats-provider"] = generation.provider
    return headers
