"""The fake OpenAI server's ``POST …/images/generations`` (OpenAI's Images API wire format).

- ``prompt`` (non-empty string) is required; ``n`` is 1-10. Every image is a small real PNG
  (:func:`tests.fakes.png.solid_png`, :data:`IMAGE_PIXELS` square) whose colour is derived from
  the prompt, whatever ``size`` asks (the fake does not render at size).
- GPT Image models (``gpt-image*``) answer ``b64_json`` and a usage object like OpenAI's:
  ``input_tokens`` = ``len(prompt) // 4 + 1`` (all text: ``input_tokens_details.text_tokens``,
  ``image_tokens`` 0), ``output_tokens`` = ``n`` x :data:`OUTPUT_TOKENS` for the ``quality``
  (``auto`` and absent count as ``medium``), ``total_tokens`` their sum; and the reply carries
  ``background``, ``output_format``, ``quality`` and ``size`` as OpenAI's does. They refuse
  ``response_format`` with a 400, as OpenAI does.
- Other models answer like a per-image priced server: ``url`` (``https://images.fake/<id>.png``)
  unless ``response_format`` is ``b64_json``, with ``revised_prompt`` and no ``usage``.
- :attr:`Behaviour.prompt_tokens` / ``completion_tokens`` override the counts and
  ``omit_usage`` leaves ``usage`` out; ``status``, ``error``, ``headers`` and ``delay`` apply as
  for chat.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from tests.fakes.common import json_response
from tests.fakes.png import prompt_colour, solid_png

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

IMAGE_PIXELS = 8
OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}
MAX_IMAGES = 10


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json_response({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def image_b64(prompt: str) -> str:
    """The base64 PNG the fake answers for ``prompt``."""
    return base64.b64encode(solid_png(IMAGE_PIXELS, IMAGE_PIXELS, prompt_colour(prompt))).decode("ascii")


async def images_reply(fake: FakeOpenAI, body: Any) -> Response:
    """The answer to ``POST …/images/generations`` (checks run before a behaviour is consumed)."""
    if not isinstance(body, dict):
        return _error(400, "We could not parse the JSON body of your request.")
    model, prompt, n = body.get("model"), body.get("prompt"), body.get("n", 1)
    if not isinstance(prompt, str) or not prompt:
        return _error(400, "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
        return _error(400, f"Invalid 'n': must be between 1 and {MAX_IMAGES}.", "n", "invalid_value")
    gpt_image = isinstance(model, str) and model.startswith("gpt-image")
    if gpt_image and "response_format" in body:
        return _error(400, "Unknown parameter: 'response_format'.", "response_format", "unknown_parameter")
    behaviour = fake.next_behaviour()
    if behaviour.delay:
        await asyncio.sleep(behaviour.delay)
    headers = {"x-request-id": f"req_{secrets.token_hex(16)}", **behaviour.headers}
    if behaviour.status != 200:
        from tests.fakes.openai_server import openai_error

        error = behaviour.error if behaviour.error is not None else openai_error(behaviour.status)
        return json_response(error, behaviour.status, headers)
    created = int(time.time())
    if not gpt_image:
        if body.get("response_format") == "b64_json":
            data = [{"b64_json": image_b64(prompt), "revised_prompt": prompt} for _ in range(n)]
        else:
            data = [
                {"url": f"https://images.fake/{secrets.token_hex(8)}.png", "revised_prompt": prompt}
                for _ in range(n)
            ]
        return json_response({"created": created, "data": data}, headers=headers)
    quality = body.get("quality") or "auto"
    per_image = OUTPUT_TOKENS.get("medium" if quality == "auto" else quality, OUTPUT_TOKENS["medium"])
    input_tokens = behaviour.prompt_tokens if behaviour.prompt_tokens is not None else len(prompt) // 4 + 1
    output_tokens = behaviour.completion_tokens if behaviour.completion_tokens is not None else n * per_image
    reply: dict[str, Any] = {
        "created": created,
        "background": body.get("background") or "opaque",
        "data": [{"b64_json": image_b64(prompt)} for _ in range(n)],
        "output_format": body.get("output_format") or "png",
        "quality": "medium" if quality == "auto" else quality,
        "size": body.get("size") if body.get("size") not in (None, "auto") else "1024x1024",
    }
    if not behaviour.omit_usage:
        reply["usage"] = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"image_tokens": 0, "text_tokens": input_tokens},
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
    return json_response(reply, headers=headers)
