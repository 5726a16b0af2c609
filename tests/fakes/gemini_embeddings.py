"""The fake Gemini server's ``models/{model}:batchEmbedContents`` and ``:embedContent``.

- ``batchEmbedContents``: ``{"requests": [{"model": "models/{model}", "content": {"parts":
  [{"text": …}]}, "outputDimensionality": N, "taskType": …}]}``; 1 to :data:`MAX_BATCH` requests,
  each naming the model of the URL, each with non-empty text; else 400 ``INVALID_ARGUMENT``.
  Answer ``{"embeddings": [{"values": [...]}]}`` in request order, no token counts (as the real
  API). ``embedContent``: one ``content`` (+ ``outputDimensionality``), answer ``{"embedding":
  {"values": [...]}}``.
- vectors: :func:`tests.fakes.embedding_vectors.embedding_vector` of the request's text (its
  parts joined), ``outputDimensionality`` long, else 3072 (768 for ``text-embedding-004``).
- ``status``, ``error``, ``headers`` and ``delay`` of the next behaviour apply as for generate.

Request fields are read in camelCase or snake_case, like the real API.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from tests.fakes.common import json_response
from tests.fakes.embedding_vectors import embedding_vector

if TYPE_CHECKING:
    from tests.fakes.gemini_server import FakeGemini

MAX_BATCH = 100
DEFAULT_DIMENSIONS = 3072
MODEL_DIMENSIONS = {"text-embedding-004": 768}
EMBED_METHODS = ("batchEmbedContents", "embedContent")


def _field(mapping: dict[str, Any], camel: str, snake: str) -> Any:
    return mapping.get(camel, mapping.get(snake))


def _error(code: int, message: str) -> Response:
    """A Google error body (imported here: that module imports this one)."""
    from tests.fakes.gemini_server import google_error

    return json_response(google_error(code, message), code)


def _text_of(content: Any) -> str | None:
    """The text of a ``Content`` (its text parts joined), or None when it has none."""
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return None
    texts = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
    text = "".join(texts)
    return text or None


def _dimensions(request: dict[str, Any], model: str) -> int | Response:
    size = _field(request, "outputDimensionality", "output_dimensionality")
    if size is None:
        return MODEL_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        return _error(400, "* EmbedContentRequest.output_dimensionality: must be a positive integer\n")
    return size


async def embed_reply(fake: FakeGemini, model: str, method: str, body: Any) -> Response:
    """The answer to ``…/models/{model}:{method}`` (checks run before a behaviour is consumed)."""
    if not isinstance(body, dict):
        return _error(400, "Invalid JSON payload received.")
    requests: Any
    if method == "embedContent":
        requests = [body]
        where = "EmbedContentRequest"
    else:
        requests = body.get("requests")
        where = "BatchEmbedContentsRequest.requests"
        if not isinstance(requests, list) or not requests:
            return _error(400, f"* {where}: at least one request is required\n")
        if len(requests) > MAX_BATCH:
            return _error(400, f"* {where}: at most {MAX_BATCH} requests can be in one batch\n")
    items: list[tuple[str, int]] = []
    for index, request in enumerate(requests):
        at = f"{where}[{index}]" if method != "embedContent" else where
        if not isinstance(request, dict):
            return _error(400, f"* {at}: must be an object\n")
        named = request.get("model")
        if method != "embedContent" and named != f"models/{model}":
            return _error(
                400, f"* {at}.model: must be 'models/{model}' (the model in the URL), got {named!r}\n"
            )
        text = _text_of(request.get("content"))
        if text is None:
            return _error(400, f"* {at}.content: content must have at least one non-empty text part\n")
        size = _dimensions(request, model)
        if isinstance(size, Response):
            return size
        items.append((text, size))

    behaviour = fake.next_behaviour()
    if behaviour.delay:
        await asyncio.sleep(behaviour.delay)
    if behaviour.status != 200:
        from tests.fakes.gemini_server import google_error

        error = behaviour.error if behaviour.error is not None else google_error(behaviour.status)
        return json_response(error, behaviour.status, dict(behaviour.headers))
    vectors = [{"values": embedding_vector(model, text, size)} for text, size in items]
    payload = {"embedding": vectors[0]} if method == "embedContent" else {"embeddings": vectors}
    return json_response(payload, headers=dict(behaviour.headers))
