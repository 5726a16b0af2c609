"""``POST /v1/images/generations``: OpenAI's Images API in front of OpenAI (and xAI / OpenAI-
compatible servers, passthrough) and Gemini image models (``generateContent``, one call per image).

auth (memory) → parse → plan (image models only) → reserve the worst case → attempt loop with
failover → reply, settle and queue the usage record (endpoint ``images``).

Billing follows the serving route's price card: its ``image`` meter per image returned, plus its
token meters on the usage the provider reports (input text / image tokens, output image tokens),
so a card priced per image, per token, or both, is billed as it says.
"""

from __future__ import annotations

import asyncio
import logging

from ..canonical import Usage
from ..formats import gemini_images, openai_images
from ..formats.openai_images import ImageRequest, ImageResult, Refusal
from ..ids import new_generation_id
from ..money import nanos_to_usd
from ..pipeline.attempts import Answer, Unsuitable, attempt_candidates, success_headers
from ..pipeline.generation import Generation
from ..pipeline.routing import Candidate, Plan
from ..pipeline.tokens import count_tokens_async
from ..providers.base import UpstreamFailure
from ..state import AppState
from .asgi import Receive, Reply, Scope, Send, header_values, read_body
from .errors import GatewayError

log = logging.getLogger(__name__)

SURFACE = "images"
# The image wire each provider type speaks; other types (anthropic) make no images.
WIRES: dict[str, str] = {
    "openai": "openai",
    "xai": "openai",
    "openai_compatible": "openai",
    "google": "gemini",
}

# (wire, upstream body): one body; Gemini sends it once per image.
Prepared = tuple[str, bytes]


def reservation_amount(plan: Plan, request: ImageRequest, body_bytes: int) -> int:
    """Worst case over every candidate: ``n`` images, each at most the route's
    ``max_output_tokens`` output tokens, and no more input tokens than body bytes."""
    worst = 0
    for candidate in plan.candidates:
        route = candidate.route
        max_input = min(body_bytes, route.context_length) * (request.n if _wire(candidate) == "gemini" else 1)
        max_output = request.n * route.max_output_tokens
        worst = max(worst, route.price.worst_case(max_input, max_output, images=request.n))
    return worst


def _wire(candidate: Candidate) -> str | None:
    return WIRES.get(candidate.provider.config.type)


class ImagesEndpoint:
    """The ASGI app for ``POST /v1/images/generations``."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self._state
        metrics = state.metrics
        generation = Generation(new_generation_id(), SURFACE, None, state.wallets, state.writer, metrics)
        metrics.in_flight += 1
        try:
            try:
                reply = await self.handle(generation, scope, receive)
            except Exception:  # a bug: answer 500 in the contract shape, keep the traceback in the log
                log.exception("unhandled error serving %s", scope.get("path"))
                error = GatewayError("server_error", "The gateway hit an internal error; it has been logged")
                generation.close("failed", error="server_error")
                reply = Reply.error(error, generation.id)
            metrics.response(SURFACE, reply.status)
            await reply.send(send, receive)
        finally:
            metrics.in_flight -= 1

    async def handle(self, generation: Generation, scope: Scope, receive: Receive) -> Reply:
        state = self._state
        try:
            generation.principal = state.keys.authenticate(
                header_values(scope, b"authorization", b"x-api-key")
            )
            raw = await read_body(receive)
            if state.writer.backlogged:  # the database is behind the traffic: hold intake
                await state.writer.wait_for_room()
            request = openai_images.parse_image_request(raw)
            generation.model_id = request.model_id
            plan = state.router.plan(request.body, SURFACE)
            generation.price = plan.candidates[0].route.price
            generation.reservation = await state.wallets.hold(
                generation.principal.workspace_id, reservation_amount(plan, request, len(raw)), generation.id
            )
            routing = state.settings.routing

            async def call(candidate: Candidate, prepared: Prepared) -> Answer[ImageResult]:
                return await self._call(generation, candidate, prepared, request.n)

            result = await attempt_candidates(
                generation=generation,
                plan=plan,
                health=state.health,
                max_attempts=routing.max_attempts,
                deadline_s=routing.deadline_s,
                prepare=lambda candidate: _prepare(candidate, request),
                call=call,
            )
            usage = result.usage
            estimated = usage is None
            if usage is None:  # the provider reported no tokens: count the prompt, output unknown
                usage = Usage(input_tokens=await count_tokens_async(request.prompt))
            assert generation.price is not None  # set by the attempt that served
            cost = generation.price.cost(usage, images=len(result.images))
            body = openai_images.reply_body(result, generation.created, usage, nanos_to_usd(cost))
            generation.close("completed", usage=usage, cost=cost, usage_estimated=estimated)
            return Reply.json(body, success_headers(state.metrics, SURFACE, generation))
        except GatewayError as error:
            generation.close("failed", error=f"{error.reason}: {error.message}")
            return Reply.error(error, generation.id)

    async def _call(
        self, generation: Generation, candidate: Candidate, prepared: Prepared, n: int
    ) -> Answer[ImageResult]:
        """Send the prepared body (once per image for Gemini) and read the images."""
        wire, body = prepared
        name = candidate.provider.config.name
        if wire == "openai":
            status, data = await _post(candidate, SURFACE, body)
            return Answer(openai_images.read_openai_reply(data, name), status)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(_post(candidate, "gemini", body)) for _ in range(n)]
        except BaseExceptionGroup as failures:
            raise _first_failure(failures) from None
        try:
            images = [gemini_images.read_gemini_image(task.result()[1], name) for task in tasks]
        except GatewayError as error:
            if error.reason != "provider_error":  # no image (blocked): the caller's, not the provider's
                elapsed = generation.upstream_end("no_image", 200)
                self._state.health.record_success(name, candidate.route.model, latency_s=elapsed)
            raise
        return Answer(gemini_images.combine(images), tasks[0].result()[0])


async def _post(candidate: Candidate, fmt: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` to the candidate's ``fmt`` endpoint; the status and the whole reply body."""
    reply = await candidate.provider.send(fmt, body, stream=False, model=candidate.route.model)
    try:
        data = await reply.read()
    finally:
        reply.release()
    return reply.status, data


def _first_failure(failures: BaseExceptionGroup) -> BaseException:
    """The failure that decides a failed batch of per-image calls: a caller's error (final) over a
    retryable one, so a request the provider refuses is not retried elsewhere."""
    flat: list[BaseException] = []
    stack: list[BaseException] = [failures]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(reversed(item.exceptions))
        else:
            flat.append(item)
    for item in flat:
        if isinstance(item, UpstreamFailure) and not item.retryable:
            return item
    for item in flat:
        if isinstance(item, UpstreamFailure | GatewayError):
            return item
    return flat[0]


def _prepare(candidate: Candidate, request: ImageRequest) -> Prepared:
    """The upstream body for ``candidate``, or :class:`Unsuitable` when it cannot take the request."""
    provider = candidate.provider
    name, provider_type = provider.config.name, provider.config.type
    wire = WIRES.get(provider_type)
    if wire is None:
        raise Unsuitable(
            "no_images_endpoint",
            f"Provider '{name}' (type {provider_type}) cannot generate images; route "
            f"'{candidate.model.id}' to an openai, xai, openai_compatible or google provider",
        )
    if wire == "openai":
        body = openai_images.openai_upstream_body(request, candidate.route.model)
    else:
        body = gemini_images.gemini_image_body(request)
    if isinstance(body, Refusal):
        raise Unsuitable("unsupported_parameter", body.message, param=body.param)
    return wire, body
