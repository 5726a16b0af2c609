"""``POST /v1/embeddings``: OpenAI's embeddings API in front of OpenAI, OpenAI-compatible servers
and the Gemini API (``batchEmbedContents``), billed per input token.

auth (memory) → parse → plan (embedding models only) → reserve the worst case → attempt loop
with failover → reply, settle and queue the usage record (endpoint ``embeddings``).
"""

from __future__ import annotations

import asyncio
import logging

from ..canonical import Usage
from ..formats import gemini_embeddings, openai_embeddings
from ..formats.openai_embeddings import Embedded, EmbeddingRequest
from ..ids import new_generation_id
from ..money import nanos_to_usd
from ..pipeline.attempts import Answer, Unsuitable, attempt_candidates, success_headers
from ..pipeline.generation import Generation
from ..pipeline.routing import Candidate, Plan
from ..pipeline.tokens import count_tokens
from ..state import AppState
from .asgi import Receive, Reply, Scope, Send, header_values, read_body
from .errors import GatewayError

log = logging.getLogger(__name__)

SURFACE = "embeddings"
# The embeddings wire each provider type speaks; other types have no embeddings endpoint.
WIRES: dict[str, str] = {
    "openai": "openai",
    "xai": "openai",
    "openai_compatible": "openai",
    "google": "gemini",
}

# (wire, [(upstream body, inputs in it)]): one body, or one per Gemini batch.
Prepared = tuple[str, list[tuple[bytes, int]]]


def reservation_amount(plan: Plan, request: EmbeddingRequest, body_bytes: int) -> int:
    """Worst case over every candidate: no more input tokens than body bytes, nor than each
    input's limit (the route's ``context_length``) allows."""
    worst = 0
    for candidate in plan.candidates:
        route = candidate.route
        max_input = min(body_bytes, request.count * route.context_length)
        worst = max(worst, route.price.worst_case(max_input, 0))
    return worst


async def count_input_tokens(request: EmbeddingRequest) -> int:
    """Input tokens counted by the gateway (a provider that reports none): the token ids, or the
    texts through the gateway's tokenizer (in a worker thread)."""
    if request.token_ids is not None:
        return sum(len(ids) for ids in request.token_ids)
    texts = request.texts or []
    return await asyncio.to_thread(lambda: sum(count_tokens(text) for text in texts))


class EmbeddingsEndpoint:
    """The ASGI app for ``POST /v1/embeddings``."""

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
            request = openai_embeddings.parse_request(raw)
            generation.model_id = request.model_id
            plan = state.router.plan(request.body, SURFACE)
            generation.price = plan.candidates[0].route.price
            generation.reservation = await state.wallets.hold(
                generation.principal.workspace_id, reservation_amount(plan, request, len(raw)), generation.id
            )
            routing = state.settings.routing

            async def call(candidate: Candidate, prepared: Prepared) -> Answer[Embedded]:
                return await self._call(candidate, prepared, request)

            embedded = await attempt_candidates(
                generation=generation,
                plan=plan,
                health=state.health,
                max_attempts=routing.max_attempts,
                deadline_s=routing.deadline_s,
                prepare=lambda candidate: _prepare(candidate, request),
                call=call,
            )
            estimated = embedded.prompt_tokens is None
            tokens = embedded.prompt_tokens
            if tokens is None:
                tokens = await count_input_tokens(request)
            usage = Usage(input_tokens=tokens)
            cost = generation.cost_of(usage)
            body = openai_embeddings.render(
                embedded.vectors,
                request.encoding_format,
                generation.model_id or request.model_id,
                tokens,
                nanos_to_usd(cost),
            )
            generation.close("completed", usage=usage, cost=cost, usage_estimated=estimated)
            return Reply.json(body, success_headers(state.metrics, SURFACE, generation))
        except GatewayError as error:
            generation.close("failed", error=f"{error.reason}: {error.message}")
            return Reply.error(error, generation.id)

    async def _call(
        self, candidate: Candidate, prepared: Prepared, request: EmbeddingRequest
    ) -> Answer[Embedded]:
        """Send the prepared bodies to the candidate and read its vectors, in the client's encoding."""
        wire, bodies = prepared
        provider, model = candidate.provider, candidate.route.model
        vectors: list[openai_embeddings.Vector] = []
        reported: int | None = 0
        status = 200
        for body, inputs in bodies:
            reply = await provider.send(SURFACE, body, stream=False, model=model)
            try:
                data = await reply.read()
            finally:
                reply.release()
            status = reply.status
            if wire == "gemini":
                batch, tokens = gemini_embeddings.read_batch(data, inputs)
                vectors.extend(batch)
            else:
                embedded = openai_embeddings.read_reply(data, inputs)
                vectors.extend(embedded.vectors)
                tokens = embedded.prompt_tokens
            reported = None if reported is None or tokens is None else reported + tokens
        encoding = request.encoding_format
        converted = [openai_embeddings.encode_vector(vector, encoding) for vector in vectors]
        return Answer(Embedded(converted, reported), status)


def _prepare(candidate: Candidate, request: EmbeddingRequest) -> Prepared:
    """The upstream bodies for ``candidate``, or :class:`Unsuitable` when it cannot take them."""
    provider = candidate.provider
    name, provider_type = provider.config.name, provider.config.type
    wire = WIRES.get(provider_type)
    if wire is None:
        raise Unsuitable(
            "no_embeddings_endpoint",
            f"Provider '{name}' (type {provider_type}) has no embeddings endpoint; "
            f"route '{candidate.model.id}' to an openai, openai_compatible or google provider",
            reason="no_provider_available",
        )
    if wire == "openai":
        return wire, [(openai_embeddings.upstream_body(request, candidate.route.model), request.count)]
    if request.texts is None:
        raise Unsuitable(
            "token_input_unsupported",
            f"Provider '{name}' (Gemini API) embeds text only: send 'input' as a string or a list "
            "of strings, not token ids",
            param="input",
        )
    return wire, [
        (gemini_embeddings.batch_body(texts, candidate.route.model, request.dimensions), len(texts))
        for texts in gemini_embeddings.batches(request.texts)
    ]
