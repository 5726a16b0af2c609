"""``POST /v1/embeddings``: OpenAI's embeddings API in front of OpenAI, OpenAI-compatible servers
and the Gemini API (``batchEmbedContents``), billed per input token.

The request lifecycle (auth, limits, BYOK, wallet hold, attempt loop with failover, headers) is
:mod:`.whole_reply`'s; this module states the embeddings parts: parse, worst case (input tokens),
the upstream bodies per provider type, reading vectors, and the reply (endpoint ``embeddings``).
"""

from __future__ import annotations

import asyncio

from ..canonical import Usage
from ..formats import gemini_embeddings, openai_embeddings
from ..formats.openai_embeddings import Embedded, EmbeddingRequest
from ..money import nanos_to_usd
from ..pipeline.attempts import Answer, Unsuitable, Upstream
from ..pipeline.generation import Generation
from ..pipeline.routing import Candidate
from ..pipeline.tokens import count_tokens
from .whole_reply import WholeReplyEndpoint

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


def worst_case(candidate: Candidate, request: EmbeddingRequest, body_bytes: int) -> int:
    """The most ``candidate`` can cost: no more input tokens than body bytes, nor than each
    input's limit (the route's ``context_length``) allows."""
    route = candidate.route
    max_input = min(body_bytes, request.count * route.context_length)
    return route.price.worst_case(max_input, 0)


async def count_input_tokens(request: EmbeddingRequest) -> int:
    """Input tokens counted by the gateway (a provider that reports none): the token ids, or the
    texts through the gateway's tokenizer (in a worker thread)."""
    if request.token_ids is not None:
        return sum(len(ids) for ids in request.token_ids)
    texts = request.texts or []
    return await asyncio.to_thread(lambda: sum(count_tokens(text) for text in texts))


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


class EmbeddingsEndpoint(WholeReplyEndpoint[EmbeddingRequest, Prepared, Embedded]):
    """The ASGI app for ``POST /v1/embeddings``."""

    surface = SURFACE
    parse = staticmethod(openai_embeddings.parse_request)
    worst_case = staticmethod(worst_case)
    prepare = staticmethod(_prepare)

    async def call(
        self, generation: Generation, upstream: Upstream, prepared: Prepared, request: EmbeddingRequest
    ) -> Answer[Embedded]:
        """Send the prepared bodies to the candidate and read its vectors, in the client's encoding."""
        wire, bodies = prepared
        vectors: list[openai_embeddings.Vector] = []
        reported: int | None = 0
        status = 200
        for body, inputs in bodies:
            status, data = await upstream.post(SURFACE, body)
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

    async def finish(self, generation: Generation, request: EmbeddingRequest, value: Embedded) -> bytes:
        """The OpenAI embeddings reply; input tokens counted by the gateway when none were reported."""
        tokens = value.prompt_tokens
        if tokens is None:
            tokens = await count_input_tokens(request)
        usage = Usage(input_tokens=tokens)
        cost = generation.cost_of(usage)  # the list price, or the BYOK fee of it
        body = openai_embeddings.render(
            value.vectors,
            request.encoding_format,
            generation.model_id or request.model_id,
            tokens,
            nanos_to_usd(cost),
        )
        generation.close("completed", usage=usage, cost=cost, usage_estimated=value.prompt_tokens is None)
        return body
