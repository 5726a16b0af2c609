"""The fake Gemini server's image generation: ``generateContent`` on an image request.

A ``generateContent`` request whose ``generationConfig.responseModalities`` holds ``IMAGE`` is
answered here (see :func:`wants_image`), as Gemini image models ("Nano Banana") answer it:

- one candidate whose parts are, in order: a thought summary ``{"text", "thought": true}`` when
  :attr:`Behaviour.thinking` is set, then (when ``TEXT`` is also asked for) a text part, then the
  image as ``inlineData {mimeType: "image/png", data: <base64>}``: a small real PNG
  (:func:`tests.fakes.png.solid_png`, :data:`IMAGE_PIXELS` square) coloured from the prompt.
- ``generationConfig.imageConfig``: ``aspectRatio`` must be one of :data:`ASPECT_RATIOS` and
  ``imageSize`` one of ``1K`` / ``2K`` / ``4K``, else a 400 ``INVALID_ARGUMENT`` as on Google.
- ``usageMetadata``: ``promptTokenCount`` = ``len(prompt text) // 4 + 1`` (TEXT in
  ``promptTokensDetails``); ``candidatesTokenCount`` = the image's tokens for its size
  (:data:`IMAGE_TOKENS`; IMAGE in ``candidatesTokensDetails``) plus 2 for a text part;
  ``thoughtsTokenCount`` = :attr:`Behaviour.thoughts_tokens` (default 0, or 16 with thinking).
  :attr:`Behaviour.prompt_tokens` / ``output_tokens`` override the counts.
- ``finish_reason`` (e.g. ``IMAGE_SAFETY``) answers that finishReason with no image part;
  ``status``, ``error``, ``headers``, ``delay`` and ``omit_usage`` apply as for text.
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from tests.fakes.common import json_response
from tests.fakes.png import prompt_colour, solid_png

if TYPE_CHECKING:
    from tests.fakes.gemini_server import FakeGemini

IMAGE_PIXELS = 8
ASPECT_RATIOS = frozenset(
    {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "1:4", "4:1", "1:8", "8:1"}
)
IMAGE_TOKENS = {"1K": 1120, "2K": 1680, "4K": 2520}


def _config(body: dict[str, Any]) -> dict[str, Any]:
    config = body.get("generationConfig") or body.get("generation_config") or {}
    return config if isinstance(config, dict) else {}


def wants_image(body: Any) -> bool:
    """Whether a ``generateContent`` body asks for an image (``responseModalities`` has IMAGE)."""
    if not isinstance(body, dict):
        return False
    config = _config(body)
    modalities = config.get("responseModalities") or config.get("response_modalities") or []
    return isinstance(modalities, list) and any(str(m).upper() == "IMAGE" for m in modalities)


def _prompt_text(body: dict[str, Any]) -> str:
    texts: list[str] = []
    for content in body.get("contents") or []:
        for part in (content or {}).get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return "\n".join(texts)


def image_b64(prompt: str) -> str:
    """The base64 PNG the fake answers for ``prompt``."""
    return base64.b64encode(solid_png(IMAGE_PIXELS, IMAGE_PIXELS, prompt_colour(prompt))).decode("ascii")


async def image_reply(fake: FakeGemini, model: str, body: dict[str, Any]) -> Response:
    """The answer to an image ``generateContent`` request for ``model``."""
    from tests.fakes.gemini_server import google_error

    config = _config(body)
    image_config = config.get("imageConfig") or config.get("image_config") or {}
    ratio = image_config.get("aspectRatio") or image_config.get("aspect_ratio")
    size = image_config.get("imageSize") or image_config.get("image_size") or "1K"
    if ratio is not None and ratio not in ASPECT_RATIOS:
        return json_response(
            google_error(400, f"* GenerationConfig.image_config.aspect_ratio: {ratio!r}"), 400
        )
    if size not in IMAGE_TOKENS:
        return json_response(google_error(400, f"* GenerationConfig.image_config.image_size: {size!r}"), 400)
    behaviour = fake.next_behaviour()
    if behaviour.delay:
        await asyncio.sleep(behaviour.delay)
    headers = dict(behaviour.headers)
    if behaviour.status != 200:
        error = behaviour.error if behaviour.error is not None else google_error(behaviour.status)
        return json_response(error, behaviour.status, headers)
    prompt = _prompt_text(body)
    asked = config.get("responseModalities") or config.get("response_modalities") or []
    modalities = [str(m).upper() for m in asked]
    parts: list[dict[str, Any]] = []
    if behaviour.thinking:
        parts.append({"text": behaviour.thinking, "thought": True})
    text_tokens = 0
    if "TEXT" in modalities:
        parts.append({"text": "Here is your image."})
        text_tokens = 2
    image_tokens = 0
    finish = behaviour.finish_reason or "STOP"
    if behaviour.finish_reason is None:
        parts.append({"inlineData": {"mimeType": "image/png", "data": image_b64(prompt)}})
        image_tokens = IMAGE_TOKENS[size]
    prompt_tokens = behaviour.prompt_tokens if behaviour.prompt_tokens is not None else len(prompt) // 4 + 1
    candidates_tokens = (
        behaviour.output_tokens if behaviour.output_tokens is not None else image_tokens + text_tokens
    )
    thoughts = (
        behaviour.thoughts_tokens
        if behaviour.thoughts_tokens is not None
        else (16 if behaviour.thinking else 0)
    )
    candidate: dict[str, Any] = {
        "content": {"parts": parts, "role": "model"},
        "finishReason": finish,
        "index": 0,
    }
    reply: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": "fake-image"}
    if not behaviour.omit_usage:
        details = [{"modality": "IMAGE", "tokenCount": image_tokens}]
        if text_tokens:
            details.append({"modality": "TEXT", "tokenCount": text_tokens})
        usage: dict[str, Any] = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": candidates_tokens,
            "totalTokenCount": prompt_tokens + candidates_tokens + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
            "candidatesTokensDetails": details,
        }
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        reply["usageMetadata"] = usage
    return json_response(reply, headers=headers)
