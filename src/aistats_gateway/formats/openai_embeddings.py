"""The OpenAI embeddings wire format: the request the gateway accepts, the body it forwards to
OpenAI-shaped providers, their reply, and the reply it sends back.

``encoding_format: "base64"`` is the vector as little-endian float32 bytes, base64-encoded (what
OpenAI sends and what the ``openai`` SDKs ask for by default and decode). The gateway converts
when the provider answered in the other encoding than the client asked for; a base64 answer for a
base64 request is passed through untouched.
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..api.errors import GatewayError, invalid

ENCODINGS = ("float", "base64")
MAX_INPUTS = 2048  # OpenAI's limit on the number of inputs in one request
# Fields the gateway reads itself and never forwards (routing preferences).
GATEWAY_FIELDS = frozenset({"provider", "models"})

Vector = list[float] | str  # floats, or base64 float32 bytes as the provider sent them


@dataclass(slots=True)
class EmbeddingRequest:
    """A validated ``POST /v1/embeddings`` body."""

    body: dict[str, Any]  # the parsed body, as the client sent it
    model_id: str
    texts: list[str] | None  # the inputs, when they are text
    token_ids: list[list[int]] | None  # the inputs, when they are token ids
    dimensions: int | None
    encoding_format: str  # what the client gets: "float" (the default) or "base64"

    @property
    def count(self) -> int:
        """How many inputs (and so how many embeddings in the answer)."""
        return len(self.texts if self.texts is not None else self.token_ids or ())


@dataclass(slots=True)
class Embedded:
    """A provider's answer: one vector per input, in input order, and the tokens it reported."""

    vectors: list[Vector]
    prompt_tokens: int | None


def parse_request(raw: bytes) -> EmbeddingRequest:
    """Parse and check a request body; every problem is a 400 naming the field."""
    if not raw:
        raise invalid("The request body is empty: send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object", code="invalid_json")
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise invalid("'model' is required and must be a non-empty string", param="model")
    texts, token_ids = _inputs(body.get("input"))
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise invalid("'dimensions' must be a positive integer", param="dimensions")
    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"
    if encoding not in ENCODINGS:
        raise invalid('\'encoding_format\' must be "float" or "base64"', param="encoding_format")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("'user' must be a string", param="user")
    return EmbeddingRequest(body, model_id, texts, token_ids, dimensions, encoding)


def _inputs(value: object) -> tuple[list[str] | None, list[list[int]] | None]:
    """``input`` as texts or as token-id lists (one list per input)."""
    what = (
        "'input' must be a non-empty string, a list of non-empty strings, a list of token ids, "
        "or a list of lists of token ids"
    )
    if value is None:
        raise invalid(f"'input' is required: {what}", param="input")
    if isinstance(value, str):
        if not value:
            raise invalid("'input' must not be an empty string", param="input")
        return [value], None
    if not isinstance(value, list) or not value:
        raise invalid(what if value != [] else "'input' must not be an empty list", param="input")
    if len(value) > MAX_INPUTS:
        raise invalid(f"'input' holds {len(value)} items; at most {MAX_INPUTS} are allowed", param="input")
    if all(isinstance(item, str) for item in value):
        for index, item in enumerate(value):
            if not item:
                raise invalid(f"'input[{index}]' must not be an empty string", param="input")
        return list(value), None
    if all(_is_token(item) for item in value):
        return None, [list(value)]
    if all(isinstance(item, list) for item in value):
        for index, item in enumerate(value):
            if not item or not all(_is_token(token) for token in item):
                raise invalid(
                    f"'input[{index}]' must be a non-empty list of token ids (non-negative integers)",
                    param="input",
                )
        return None, [list(item) for item in value]
    raise invalid(what + "; it mixes kinds", param="input")


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --- to and from OpenAI-shaped providers ------------------------------------------------------


def upstream_body(request: EmbeddingRequest, model: str) -> bytes:
    """The client's body for an OpenAI-shaped provider: ``model`` rewritten, routing fields out.

    ``encoding_format`` is always sent, so a provider whose default differs answers as asked.
    """
    forwarded = {key: value for key, value in request.body.items() if key not in GATEWAY_FIELDS}
    forwarded["model"] = model
    forwarded["encoding_format"] = request.encoding_format
    return orjson.dumps(forwarded)


def read_reply(data: bytes, expected: int) -> Embedded:
    """Vectors (by ``index``) and ``usage.prompt_tokens`` of an OpenAI embeddings reply."""
    payload = _json_object(data)
    items = payload.get("data")
    if not isinstance(items, list) or len(items) != expected:
        count = len(items) if isinstance(items, list) else "no"
        raise GatewayError(
            "provider_error", f"The provider answered {count} embeddings for {expected} inputs"
        )
    vectors: list[Vector | None] = [None] * expected
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise GatewayError("provider_error", "The provider sent an embedding that is not an object")
        index = item.get("index", position)
        vector = item.get("embedding")
        if not isinstance(index, int) or not 0 <= index < expected or vectors[index] is not None:
            raise GatewayError("provider_error", f"The provider sent an embedding with a bad index {index!r}")
        if not isinstance(vector, (list, str)):
            raise GatewayError("provider_error", "The provider sent an embedding that is not a vector")
        vectors[index] = vector
    usage = payload.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    prompt_tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
    return Embedded([v for v in vectors if v is not None], prompt_tokens)


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            "provider_error", "The provider sent invalid JSON in its embeddings reply"
        ) from exc
    if not isinstance(value, dict):
        raise GatewayError("provider_error", "The provider sent a non-object embeddings reply")
    return value


# --- the gateway's answer -----------------------------------------------------------------------


def render(
    vectors: Sequence[Vector], encoding: str, model_id: str, prompt_tokens: int, cost_usd: float
) -> bytes:
    """The OpenAI reply body: each vector in the encoding the client asked for, usage and cost."""
    data = [
        {"object": "embedding", "index": index, "embedding": encode_vector(vector, encoding)}
        for index, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens, "cost": cost_usd}
    return orjson.dumps({"object": "list", "data": data, "model": model_id, "usage": usage})


def encode_vector(vector: Vector, encoding: str) -> Vector:
    """``vector`` in ``encoding``: floats, or base64 of little-endian float32."""
    if encoding == "base64":
        return vector if isinstance(vector, str) else to_base64(vector)
    return from_base64(vector) if isinstance(vector, str) else vector


def to_base64(vector: Sequence[float]) -> str:
    """Little-endian float32 bytes of ``vector``, base64-encoded (OpenAI's ``base64`` encoding)."""
    try:
        packed = array("f", vector)
    except (TypeError, OverflowError) as exc:
        raise GatewayError(
            "provider_error", "The provider sent an embedding with non-numeric values"
        ) from exc
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def from_base64(text: str) -> list[float]:
    """The floats of a base64 little-endian float32 vector."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GatewayError(
            "provider_error", "The provider sent an embedding that is not valid base64"
        ) from exc
    if len(raw) % 4:
        raise GatewayError("provider_error", "The provider sent a base64 embedding that is not float32 data")
    unpacked = array("f")
    unpacked.frombytes(raw)
    if sys.byteorder != "little":
        unpacked.byteswap()
    return unpacked.tolist()
