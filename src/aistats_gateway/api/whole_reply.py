"""One request lifecycle for endpoints whose upstream reply is one whole body (embeddings, images).

auth (memory) → read the body → writer backpressure → parse (the endpoint's) → plan with the
workspace's own provider keys (BYOK) → key limits and free tier → hold the worst case in the
wallet (BYOK candidates at the BYOK fee) → attempt loop with failover
(:func:`~..pipeline.attempts.attempt_candidates`) → render the reply (the endpoint's), settle and
queue the usage record → reply with the success and ``x-ratelimit-*`` headers.

An endpoint subclasses :class:`WholeReplyEndpoint` and states only what differs: how to parse
its body, each candidate's worst case, the upstream request per candidate, the call, and the
reply. Chat, responses and messages keep their own path (``api/inference.py``): streams.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from ..byok.fee import ByokFee
from ..pipeline.attempts import Answer, Upstream, attempt_candidates, success_headers
from ..pipeline.generation import Generation
from ..pipeline.limits import limit_headers
from ..pipeline.routing import Candidate, Plan
from ..state import AppState
from .asgi import Receive, Reply, Scope, Send, header_values, read_body
from .errors import GatewayError
from .serve import serve_generation


class ParsedRequest(Protocol):
    """What the lifecycle reads off an endpoint's parsed request."""

    @property
    def body(self) -> dict[str, Any]: ...  # the client's JSON, as sent (for planning)

    @property
    def model_id(self) -> str: ...


R = TypeVar("R", bound=ParsedRequest)  # the endpoint's parsed request
P = TypeVar("P")  # what ``prepare`` builds for one candidate
T = TypeVar("T")  # what a successful call read


def reservation(
    plan: Plan, worst_case: Callable[[Candidate], int], byok: Mapping[str, str], fee: ByokFee
) -> int:
    """The most any candidate of ``plan`` can cost: ``worst_case(candidate)`` at list price, or
    ``fee`` of it for a candidate the workspace has its own key for (so failover never costs
    more than was held)."""
    worst = 0
    for candidate in plan.candidates:
        cost = worst_case(candidate)
        if byok and candidate.provider.config.name in byok:
            cost = fee.apply(cost)
        worst = max(worst, cost)
    return worst


class WholeReplyEndpoint(ABC, Generic[R, P, T]):
    """The ASGI app of one whole-reply endpoint (``surface`` names it in records and metrics)."""

    surface: str

    def __init__(self, state: AppState) -> None:
        self._state = state

    # --- what each endpoint states ------------------------------------------------------------

    @abstractmethod
    def parse(self, raw: bytes) -> R:
        """The checked request, or a 400 :class:`GatewayError`."""

    @abstractmethod
    def worst_case(self, candidate: Candidate, request: R, body_bytes: int) -> int:
        """The most ``candidate`` can cost for ``request`` at list price (nano-USD)."""

    @abstractmethod
    def prepare(self, candidate: Candidate, request: R) -> P:
        """The upstream request for ``candidate``, or :class:`~..pipeline.attempts.Unsuitable`."""

    @abstractmethod
    async def call(self, generation: Generation, upstream: Upstream, prepared: P, request: R) -> Answer[T]:
        """Send ``prepared`` (``upstream.post`` uses the right key) and read the answer."""

    @abstractmethod
    async def finish(self, generation: Generation, request: R, value: T) -> bytes:
        """The reply body for what the serving call read; closes ``generation`` (settles it)."""

    # --- the lifecycle ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_generation(self._state, self.surface, self.handle, scope, receive, send)

    async def handle(self, generation: Generation, scope: Scope, receive: Receive) -> Reply:
        """Serve one request (see the module doc); every failure is a reply in the contract shape."""
        state = self._state
        try:
            principal = state.keys.authenticate(header_values(scope, b"authorization", b"x-api-key"))
            generation.principal = principal
            raw = await read_body(receive)
            if state.writer.backlogged:  # the database is behind the traffic: hold intake
                await state.writer.wait_for_room()
            request = self.parse(raw)
            generation.model_id = request.model_id
            # BYOK: the workspace's own provider keys (usually none: an empty mapping).
            byok = state.credentials.for_workspace(principal.workspace_id)
            fee = state.credentials.fee
            plan = state.router.plan(request.body, self.surface, byok)
            generation.price = plan.candidates[0].route.price
            hold = reservation(plan, lambda c: self.worst_case(c, request, len(raw)), byok, fee)
            await state.limiter.admit_generation(  # key limits + free tier (pipeline/limits.py)
                generation, request.model_id, request.body.get("models"), hold_nano=hold
            )
            generation.reservation = await state.wallets.hold(principal.workspace_id, hold, generation.id)
            routing = state.settings.routing

            async def call(upstream: Upstream, prepared: P) -> Answer[T]:
                return await self.call(generation, upstream, prepared, request)

            value = await attempt_candidates(
                generation=generation,
                plan=plan,
                health=state.health,
                max_attempts=routing.max_attempts,
                deadline_s=routing.deadline_s,
                prepare=lambda candidate: self.prepare(candidate, request),
                call=call,
                credentials=byok,
                byok_fee=fee,
            )
            body = await self.finish(generation, request, value)
            headers = success_headers(state.metrics, self.surface, generation)
            headers.update(limit_headers(generation))
            return Reply.json(body, headers)
        except GatewayError as error:
            generation.close("failed", error=f"{error.reason}: {error.message}")
            return Reply.error(error, generation.id)
