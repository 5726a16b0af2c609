"""The Gemini API's ``models/{model}:batchEmbedContents`` wire format, for ``POST /v1/embeddings``.

Request: ``{"requests": [{"model": "models/{model}", "content": {"parts": [{"text": …}]},
"outputDimensionality": N}]}``, at most :data:`MAX_BATCH` requests per call (larger inputs are
sent in several calls). Reply: ``{"embeddings": [{"values": [...]}]}`` in request order. The API
reports no token counts for embeddings (``usageMetadata.promptTokenCount`` is read if a reply
ever carries it); the gateway counts them itself.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..api.errors import GatewayError

MAX_BATCH = 100  # the Gemini API's limit on requests in one batchEmbedContents call


def batches(texts: list[str]) -> list[list[str]]:
    """``texts`` cut into the calls the API accepts."""
    return [texts[i : i + MAX_BATCH] for i in range(0, len(texts), MAX_BATCH)]


def batch_body(texts: list[str], model: str, dimensions: int | None) -> bytes:
    """One ``batchEmbedContents`` body for ``texts`` (``model`` is the provider's model id)."""
    name = model if model.startswith("models/") else f"models/{model}"
    requests: list[dict[str, Any]] = []
    for text in texts:
        request: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            request["outputDimensionality"] = dimensions
        requests.append(request)
    return orjson.dumps({"requests": requests})


def read_batch(data: bytes, expected: int) -> tuple[list[list[float]], int | None]:
    """The vectors of a ``batchEmbedContents`` reply, and the prompt tokens if it reports them."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            "provider_error", "The provider sent invalid JSON in its embeddings reply"
        ) from exc
    embeddings = payload.get("embeddings") if isinstance(payload, dict) else None
    if not isinstance(embeddings, list) or len(embeddings) != expected:
        count = len(embeddings) if isinstance(embeddings, list) else "no"
        raise GatewayError(
            "provider_error", f"The provider answered {count} embeddings for {expected} inputs"
        )
    vectors: list[list[float]] = []
    for embedding in embeddings:
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list):
            raise GatewayError("provider_error", "The provider sent an embedding without 'values'")
        vectors.append(values)
    usage = payload.get("usageMetadata")
    tokens = usage.get("promptTokenCount") if isinstance(usage, dict) else None
    return vectors, tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
