"""Decode and check the parts of an inference request body the pipeline itself relies on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..api.errors import invalid

# Per surface: the body fields that cap output tokens, in order of precedence.
MAX_OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "responses": ("max_output_tokens",),
    "messages": ("max_tokens",),
}


@dataclass(slots=True)
class InferenceRequest:
    body: dict[str, Any]
    model_id: str
    stream: bool
    max_output_tokens: int | None
    wants_usage: bool


def parse_inference_request(raw: bytes, surface: str) -> InferenceRequest:
    """Parse the JSON body once and check ``model``, ``stream`` and the output-token cap."""
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
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid("'stream' must be a boolean", param="stream")
    max_output = None
    for field in MAX_OUTPUT_FIELDS[surface]:
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid(f"'{field}' must be a positive integer", param=field)
        max_output = value
        break
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise invalid("'stream_options' must be an object", param="stream_options")
    wants_usage = bool(stream_options and stream_options.get("include_usage"))
    return InferenceRequest(body, model_id, stream, max_output, wants_usage)
