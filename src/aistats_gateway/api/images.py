"""``POST /v1/images/generations``: OpenAI's Images API in front of OpenAI (and xAI / OpenAI-
compatible servers, passthrough) and Gemini image models (``generateContent``, one call per image).

The request lifecycle (auth, limits, BYOK, wallet hold, attempt loop with failover, headers) is
:mod:`.whole_reply`'s; this module states the images parts (endpoint ``images``).

Billing follows the serving route's price card: its ``image`` meter per image returned, plus its
token meters on the usage the provider reports (input text / image tokens, output image tokens),
so a card priced per image, per token, or both, is billed as it says (the BYOK fee of it when
the workspace's own key served).
"""

from __future__ import annotations

import asyncio

from ..canonical import Usage
from ..formats import gemini_images, openai_images
from ..formats.openai_images import ImageRequest, ImageResult, Refusal
from ..money import nanos_to_usd
from ..pipeline.attempts import Answer, Unsuitable, Upstream
from ..pipeline.generation import Generation
from ..pipeline.routing import Candidate
from ..pipeline.tokens import count_tokens_async
from ..providers.base import UpstreamFailure
from .errors import GatewayError
from .whole_reply import WholeReplyEndpoint

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


def worst_case(candidate: Candidate, request: ImageRequest, body_bytes: int) -> int:
    """The most ``candidate`` can cost: ``n`` images, each at most the route's
    ``max_output_tokens`` output tokens, and no more input tokens than body bytes."""
    route = candidate.route
    max_input = min(body_bytes, route.context_length) * (request.n if _wire(candidate) == "gemini" else 1)
    max_output = request.n * route.max_output_tokens
    return route.price.worst_case(max_input, max_output, images=request.n)


def _wire(candidate: Candidate) -> str | None:
    return WIRES.get(candidate.provider.config.type)


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


class ImagesEndpoint(WholeReplyEndpoint[ImageRequest, Prepared, ImageResult]):
    """The ASGI app for ``POST /v1/images/generations``."""

    surface = SURFACE
    parse = staticmethod(openai_images.parse_image_request)
    worst_case = staticmethod(worst_case)
    prepare = staticmethod(_prepare)

    async def call(
        self, generation: Generation, upstream: Upstream, prepared: Prepared, request: ImageRequest
    ) -> Answer[ImageResult]:
        """Send the prepared body (once per image for Gemini) and read the images."""
        wire, body = prepared
        candidate = upstream.candidate
        name = candidate.provider.config.name
        if wire == "openai":
            status, data = await upstream.post(SURFACE, body)
            return Answer(openai_images.read_openai_reply(data, name), status)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(upstream.post("gemini", body)) for _ in range(request.n)]
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

    async def finish(self, generation: Generation, request: ImageRequest, value: ImageResult) -> bytes:
        """The OpenAI images reply, billed by the serving route's card (images and tokens)."""
        usage = value.usage
        estimated = usage is None
        if usage is None:  # the provider reported no tokens: count the prompt, output unknown
            usage = Usage(input_tokens=await count_tokens_async(request.prompt))
        assert generation.price is not None  # set by the attempt that served
        cost = generation.cost_of(usage, images=len(value.images))
        body = openai_images.reply_body(value, generation.created, usage, nanos_to_usd(cost))
        generation.close("completed", usage=usage, cost=cost, usage_estimated=estimated)
        return body


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
