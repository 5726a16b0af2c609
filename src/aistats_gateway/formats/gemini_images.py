"""Image generation on Gemini image models ("Nano Banana") through ``generateContent``.

An OpenAI Images request becomes one ``generateContent`` call per image (Gemini makes one image
per call), with ``generationConfig.responseModalities: ["IMAGE"]``; the image comes back as an
``inlineData`` part. ``size`` maps to ``imageConfig``: its ratio is the aspect ratio (it must
reduce to one Gemini offers) and its longer side picks the smallest Gemini resolution at least
that large (up to 1024 px: Gemini's default 1K, up to 2048: ``2K``, up to 4096: ``4K``).
Options only OpenAI has (``quality``, ``output_format``, ``background``, ``style``…) are refused
with a message rather than silently dropped.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import orjson

from ..api.errors import GatewayError
from ..canonical import Usage
from .gemini.response import blocked_prompt, usage_from_metadata
from .openai_images import GeneratedImage, ImageRequest, ImageResult, Refusal, parse_size

ASPECT_RATIOS = frozenset(
    {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "1:4", "4:1", "1:8", "8:1"}
)
# Longest side in pixels → Gemini's imageSize (None: its default, 1K).
IMAGE_SIZES: tuple[tuple[int, str | None], ...] = ((1024, None), (2048, "2K"), (4096, "4K"))
MIME_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
# OpenAI-only options: refused unless absent or at the value that means "the model decides".
_OPENAI_ONLY: tuple[tuple[str, str | None], ...] = (
    ("quality", "auto"),
    ("background", "auto"),
    ("moderation", "auto"),
    ("style", None),
    ("output_format", None),
    ("output_compression", None),
    ("partial_images", None),
)


def _image_config(size: str | None) -> dict[str, str] | Refusal:
    """``imageConfig`` for an OpenAI ``size``, or a message saying why Gemini cannot do it."""
    if size is None or size == "auto":
        return {}
    dims = parse_size(size)
    assert dims is not None  # checked by parse_image_request
    width, height = dims
    divisor = math.gcd(width, height)
    ratio = f"{width // divisor}:{height // divisor}"
    if ratio not in ASPECT_RATIOS:
        return Refusal(
            f"Gemini image models cannot make a {size} image: its aspect ratio {ratio} is not one "
            f"Gemini offers ({', '.join(sorted(ASPECT_RATIOS))}); ask for a size with one of those ratios",
            "size",
        )
    config = {"aspectRatio": ratio}
    longest = max(width, height)
    for limit, image_size in IMAGE_SIZES:
        if longest <= limit:
            if image_size is not None:
                config["imageSize"] = image_size
            return config
    return Refusal(
        f"Gemini image models make images up to 4096 pixels on the longer side; {size} is larger", "size"
    )


def gemini_image_body(request: ImageRequest) -> bytes | Refusal:
    """The ``generateContent`` body for one image, or a message saying what Gemini cannot do."""
    for name, neutral in _OPENAI_ONLY:
        value = request.body.get(name)
        if value is not None and value != neutral:
            return Refusal(
                f"Gemini image models do not take '{name}' ({value!r}); it is an OpenAI GPT Image "
                "option. Leave it out for this model",
                name,
            )
    if request.response_format == "url":
        return Refusal(
            "Gemini image models return the image bytes only, not a URL; leave 'response_format' "
            "out (or send 'b64_json')",
            "response_format",
        )
    image_config = _image_config(request.size)
    if isinstance(image_config, Refusal):
        return image_config
    generation_config: dict[str, Any] = {"responseModalities": ["IMAGE"], "candidateCount": 1}
    if image_config:
        generation_config["imageConfig"] = image_config
    body = {
        "contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
        "generationConfig": generation_config,
    }
    return orjson.dumps(body)


def read_gemini_image(data: bytes, provider: str) -> tuple[GeneratedImage, str | None, Usage | None]:
    """The image of one ``generateContent`` reply, its format (``png``…) and its usage.

    An unreadable reply fails the attempt over (502); a readable one without an image (the
    prompt or the image was blocked, or the model only wrote text) is a 400 naming Google's reason.
    """
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise GatewayError("provider_error", f"{provider} sent a reply that is not JSON") from exc
    if not isinstance(payload, dict):
        raise GatewayError("provider_error", f"{provider} sent a reply that is not a JSON object")
    candidates = payload.get("candidates") or []
    candidate = candidates[0] if isinstance(candidates, list) and candidates else {}
    parts = ((candidate.get("content") or {}).get("parts") or []) if isinstance(candidate, dict) else []
    texts: list[str] = []
    for part in parts:
        if not isinstance(part, dict) or part.get("thought"):
            continue  # thinking models may also send interim "thought" images
        inline = part.get("inlineData") or part.get("inline_data")
        if isinstance(inline, dict) and isinstance(inline.get("data"), str):
            mime = inline.get("mimeType") or inline.get("mime_type")
            usage = usage_from_metadata(payload.get("usageMetadata"))
            return GeneratedImage(b64_json=inline["data"]), MIME_FORMATS.get(str(mime)), usage
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
    if blocked_prompt(payload):
        reason = f"the prompt was blocked ({payload['promptFeedback'].get('blockReason')})"
    elif isinstance(candidate, dict) and candidate.get("finishReason") not in (None, "STOP"):
        reason = f"finishReason {candidate.get('finishReason')}"
    else:
        said = " ".join(texts).strip()
        reason = f"the model answered with text only: {said[:300]!r}" if said else "the reply held no image"
    raise GatewayError(
        "validation_error",
        f"{provider} generated no image: {reason}",
        code="no_image_generated",
        param="prompt",
    )


def combine(
    results: Iterable[tuple[GeneratedImage, str | None, Usage | None]],
) -> ImageResult:
    """One reply from the per-image calls: the images in order, usage summed."""
    images: list[GeneratedImage] = []
    formats: list[str] = []
    usages: list[Usage] = []
    for image, image_format, usage in results:
        images.append(image)
        if image_format:
            formats.append(image_format)
        if usage is not None:
            usages.append(usage)
    extra: dict[str, Any] = {}
    if formats and len(set(formats)) == 1:
        extra["output_format"] = formats[0]
    total = sum_usage(usages) if len(usages) == len(images) else None
    return ImageResult(images, total, None, extra)


def sum_usage(usages: Iterable[Usage]) -> Usage:
    """Every count of ``usages`` added up."""
    totals = dict.fromkeys((f.name for f in dataclasses.fields(Usage)), 0)
    for usage in usages:
        for name in totals:
            totals[name] += getattr(usage, name)
    return Usage(**totals)
