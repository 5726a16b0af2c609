"""The fake OpenAI server's ``POST …/embeddings`` (OpenAI's embeddings wire format).

- ``input``: a string, a list of strings, a list of token ids or a list of lists of token ids;
  empty strings, empty lists and mixed lists are 400s, as on OpenAI.
- vectors: :func:`tests.fakes.embedding_vectors.embedding_vector` of each input, ``dimensions``
  long when given, else the model's default (:data:`DEFAULT_DIMENSIONS`, 64 for other models).
  ``dimensions`` with ``text-embedding-ada-002`` is a 400 ("does not support"), as on OpenAI.
- ``encoding_format``: ``float`` (the default) or ``base64`` (little-endian float32);
  :attr:`Behaviour.embedding_encoding` forces one whatever is asked (a server that ignores it).
- usage: ``prompt_tokens`` = ``total_tokens`` = per string input ``len(text) // 4 + 1``, per
  token-id input the number of ids; :attr:`Behaviour.prompt_tokens` overrides it and
  :attr:`Behaviour.omit_usage` leaves ``usage`` out.
- ``status``, ``error``, ``headers`` and ``delay`` of the next behaviour apply as for chat.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import sys
from array import array
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from tests.fakes.common import json_response
from tests.fakes.embedding_vectors import embedding_vector

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

DEFAULT_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
OTHER_MODEL_DIMENSIONS = 64
_NO_DIMENSIONS = frozenset({"text-embedding-ada-002"})
_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
)


def float32_base64(vector: list[float]) -> str:
    """``vector`` as base64 of little-endian float32 bytes (OpenAI's ``base64`` encoding)."""
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _inputs(value: Any) -> list[str | list[int]] | None:
    """The inputs of a request, or None when ``input`` is not one of the accepted shapes."""

    def token(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if isinstance(value, str):
        return [value] if value else None
    if not isinstance(value, list) or not value or len(value) > 2048:
        return None
    if all(isinstance(v, str) and v for v in value):
        return list(value)
    if all(token(v) for v in value):
        return [list(value)]
    if all(isinstance(v, list) and v and all(token(t) for t in v) for v in value):
        return [list(v) for v in value]
    return None


def openai_error(status: int, message: str | None = None) -> dict[str, Any]:
    """The fake OpenAI server's error body (imported here: that module imports this one)."""
    from tests.fakes.openai_server import openai_error as error_body

    return error_body(status, message)


def _tokens(item: str | list[int]) -> int:
    return len(item) // 4 + 1 if isinstance(item, str) else len(item)


async def embeddings_reply(fake: FakeOpenAI, body: Any) -> Response:
    """The answer to one ``POST /embeddings`` (checks run before a behaviour is consumed)."""
    if not isinstance(body, dict):
        return json_response(openai_error(400, "We could not parse the JSON body of your request."), 400)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return json_response(openai_error(400, "you must provide a model parameter"), 400)
    inputs = _inputs(body.get("input"))
    if inputs is None:
        return json_response(openai_error(400, _INVALID_INPUT), 400)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        message = f"Invalid value for 'encoding_format': '{encoding}'. Expected 'float' or 'base64'."
        return json_response(openai_error(400, message), 400)
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if model in _NO_DIMENSIONS:
            return json_response(openai_error(400, "This model does not support specifying dimensions."), 400)
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            return json_response(openai_error(400, "'$.dimensions' must be a positive integer."), 400)
    size = dimensions or DEFAULT_DIMENSIONS.get(model, OTHER_MODEL_DIMENSIONS)

    behaviour = fake.next_behaviour()
    if behaviour.delay:
        await asyncio.sleep(behaviour.delay)
    headers = {"x-request-id": f"req_{secrets.token_hex(16)}", **behaviour.headers}
    if behaviour.status != 200:
        error = behaviour.error if behaviour.error is not None else openai_error(behaviour.status)
        return json_response(error, behaviour.status, headers)
    encoding = behaviour.embedding_encoding or encoding
    data = []
    for index, item in enumerate(inputs):
        vector = embedding_vector(model, item, size)
        encoded: list[float] | str = float32_base64(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    payload: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if not behaviour.omit_usage:
        tokens = behaviour.prompt_tokens if behaviour.prompt_tokens is not None else sum(map(_tokens, inputs))
        payload["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return json_response(payload, headers=headers)
