"""The OpenAI Images API (``POST /v1/images/generations``): the client's request, the reply, and
the OpenAI-shaped upstream (passthrough to OpenAI, xAI and OpenAI-compatible servers).

The client's body is checked once for what the gateway itself relies on (``prompt``, ``n``,
``stream``, the enumerated options); anything else is the provider's business and passes
through unchanged to OpenAI-shaped providers. Translation for other providers lives beside this
module (``gemini_images``) and reads the :class:`ImageRequest` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..api.errors import GatewayError, invalid
from ..canonical import Usage

MAX_IMAGES = 10  # OpenAI's limit on ``n``
RESPONSE_FORMATS = ("url", "b64_json")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
# Routing fields the gateway reads and never forwards.
GATEWAY_FIELDS = frozenset({"provider", "models"})


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """A checked image generation request; ``body`` is the client's JSON as sent."""

    body: dict[str, Any]
    model_id: str
    prompt: str
    n: int
    size: str | None = None
    quality: str | None = None
    response_format: str | None = None
    output_format: str | None = None
    background: str | None = None
    moderation: str | None = None
    style: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one route cannot take a request (the parameter at fault, and what to do instead)."""

    message: str
    param: str | None = None


@dataclass(slots=True)
class GeneratedImage:
    """One image of a reply: base64 bytes or a URL the provider hosts."""

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None

    def to_openai(self) -> dict[str, Any]:
        item: dict[str, Any] = {"b64_json": self.b64_json} if self.b64_json is not None else {"url": self.url}
        if self.revised_prompt is not None:
            item["revised_prompt"] = self.revised_prompt
        return item


@dataclass(slots=True)
class ImageResult:
    """What one provider call (or, for Gemini, one call per image) produced.

    ``usage`` is None when the provider reported no token usage; ``usage_object`` is the
    provider's own OpenAI-shaped ``usage`` to hand back (None: build one from ``usage``);
    ``extra`` holds the other top-level reply fields OpenAI sends (``background``,
    ``output_format``, ``quality``, ``size``).
    """

    images: list[GeneratedImage]
    usage: Usage | None
    usage_object: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _optional_choice(body: dict[str, Any], name: str, allowed: tuple[str, ...] | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise invalid(f"'{name}' must be a non-empty string", param=name)
    if allowed is not None and value not in allowed:
        raise invalid(f"'{name}' must be one of {', '.join(allowed)}; got '{value}'", param=name)
    return value


def parse_image_request(raw: bytes) -> ImageRequest:
    """Parse and check a ``POST /v1/images/generations`` body (400 with the field at fault)."""
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
        raise invalid(
            "'model' is required and must be a non-empty string "
            "(GET /v1/models lists the image models: kind 'images')",
            param="model",
        )
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("'prompt' is required and must be a non-empty string", param="prompt")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
        raise invalid(f"'n' must be an integer from 1 to {MAX_IMAGES}; got {n!r}", param="n")
    if body.get("stream") not in (None, False):
        raise invalid(
            "Streaming image generation ('stream': true, 'partial_images') is not supported by the "
            "gateway; send the request without 'stream' to get the finished images",
            param="stream",
        )
    size = _optional_choice(body, "size")
    if size is not None and size != "auto" and parse_size(size) is None:
        raise invalid(
            f"'size' must be 'auto' or WIDTHxHEIGHT in pixels (e.g. 1024x1024); got '{size}'", param="size"
        )
    return ImageRequest(
        body=body,
        model_id=model_id,
        prompt=prompt,
        n=n,
        size=size,
        quality=_optional_choice(body, "quality"),
        response_format=_optional_choice(body, "response_format", RESPONSE_FORMATS),
        output_format=_optional_choice(body, "output_format", OUTPUT_FORMATS),
        background=_optional_choice(body, "background"),
        moderation=_optional_choice(body, "moderation"),
        style=_optional_choice(body, "style"),
    )


def parse_size(size: str) -> tuple[int, int] | None:
    """``(width, height)`` of a ``WIDTHxHEIGHT`` size, or None when it is not one."""
    width, sep, height = size.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        return None
    w, h = int(width), int(height)
    return (w, h) if w > 0 and h > 0 else None


# --- OpenAI-shaped upstream (passthrough) --------------------------------------------------


def is_gpt_image(upstream_model: str) -> bool:
    """Whether an OpenAI model is a GPT Image model (always base64; no ``response_format``)."""
    return upstream_model.startswith("gpt-image")


def openai_upstream_body(request: ImageRequest, upstream_model: str) -> bytes | Refusal:
    """The body to forward: the client's, with ``model`` rewritten and the gateway's routing
    fields removed; or, when this model cannot take the request, a message saying why."""
    body = {k: v for k, v in request.body.items() if k not in GATEWAY_FIELDS}
    body["model"] = upstream_model
    if is_gpt_image(upstream_model):
        if request.response_format == "url":
            return Refusal(
                f"'{upstream_model}' returns images only as base64 ('b64_json'); it cannot return a "
                "URL. Leave 'response_format' out (or send 'b64_json')",
                "response_format",
            )
        body.pop("response_format", None)  # GPT Image models only do b64_json and reject the field
    return orjson.dumps(body)


def read_openai_reply(data: bytes, provider: str) -> ImageResult:
    """Read an Images API reply; an unreadable one is the provider's fault (502, fails over)."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise GatewayError("provider_error", f"{provider} sent an image reply that is not JSON") from exc
    items = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        raise GatewayError("provider_error", f"{provider} sent an image reply without 'data'")
    images: list[GeneratedImage] = []
    for item in items:
        b64 = item.get("b64_json") if isinstance(item, dict) else None
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(b64, str) and not isinstance(url, str):
            raise GatewayError("provider_error", f"{provider} sent an image without 'b64_json' or 'url'")
        revised = item.get("revised_prompt")
        images.append(
            GeneratedImage(
                b64_json=b64 if isinstance(b64, str) else None,
                url=url if isinstance(url, str) and not isinstance(b64, str) else None,
                revised_prompt=revised if isinstance(revised, str) else None,
            )
        )
    raw_usage = payload.get("usage")
    usage_object = raw_usage if isinstance(raw_usage, dict) else None
    extra = {
        key: payload[key]
        for key in ("background", "output_format", "quality", "size")
        if payload.get(key) is not None
    }
    return ImageResult(images, Usage.from_openai_responses(usage_object), usage_object, extra)


# --- the reply to the client ---------------------------------------------------------------


def usage_object(usage: Usage) -> dict[str, Any]:
    """An OpenAI Images ``usage`` object for a usage the provider reported in another shape."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "text_tokens": usage.input_tokens - usage.input_image_tokens,
            "image_tokens": usage.input_image_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {
            "text_tokens": usage.output_tokens - usage.output_image_tokens,
            "image_tokens": usage.output_image_tokens,
        },
        "total_tokens": usage.total_tokens,
    }


def reply_body(result: ImageResult, created: int, usage: Usage, cost_usd: float) -> bytes:
    """``{created, data: [...], usage: {..., cost}, ...}``: OpenAI's shape plus the gateway's cost."""
    usage_out = dict(result.usage_object) if result.usage_object is not None else usage_object(usage)
    usage_out["cost"] = cost_usd
    payload: dict[str, Any] = {
        "created": created,
        "data": [image.to_openai() for image in result.images],
        **result.extra,
        "usage": usage_out,
    }
    return orjson.dumps(payload)
