"""Which routing-relevant parameters a request body uses, per client surface.

The names are the vocabulary of a catalog route's ``supported_parameters``
(:data:`aistats_gateway.settings.ROUTE_PARAMETERS`). ``provider.require_parameters: true``
keeps only the routes that declare every parameter returned here; this runs only for such
requests, never on the plain request path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .request import MAX_OUTPUT_FIELDS

# Plain fields that count as used when present and not null, per surface.
_SCALARS: dict[str, tuple[tuple[str, str], ...]] = {
    "chat": (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
        ("top_logprobs", "logprobs"),
        ("tool_choice", "tool_choice"),
        ("reasoning_effort", "reasoning"),
        ("reasoning", "reasoning"),
    ),
    "responses": (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
        ("top_logprobs", "logprobs"),
        ("tool_choice", "tool_choice"),
        ("reasoning", "reasoning"),
    ),
    "messages": (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("tool_choice", "tool_choice"),
    ),
}

# Content-part types that carry an image, per surface.
_IMAGE_PARTS: dict[str, frozenset[str]] = {
    "chat": frozenset({"image_url", "input_image"}),
    "responses": frozenset({"input_image"}),
    "messages": frozenset({"image"}),
}


def used_parameters(body: dict[str, Any], surface: str) -> frozenset[str]:
    """The ``ROUTE_PARAMETERS`` names ``body`` (a ``chat``/``responses``/``messages`` request) uses."""
    used: set[str] = set()
    for field, name in _SCALARS.get(surface, ()):
        if body.get(field) is not None:
            used.add(name)
    if any(body.get(field) is not None for field in MAX_OUTPUT_FIELDS.get(surface, ())):
        used.add("max_tokens")
    if body.get("tools"):
        used.add("tools")
    if _structured_output(body, surface):
        used.add("response_format")
    if surface == "messages":
        thinking = body.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
            used.add("reasoning")
        if body.get("stop_sequences"):
            used.add("stop")
    else:
        if body.get("stop"):
            used.add("stop")
        if body.get("logprobs") is True:
            used.add("logprobs")
        include = body.get("include")
        if isinstance(include, list) and "message.output_text.logprobs" in include:
            used.add("logprobs")
    if _has_image(body, surface):
        used.add("images")
    return frozenset(used)


def _structured_output(body: dict[str, Any], surface: str) -> bool:
    """A JSON schema / JSON object output format (plain ``text`` is the default, not a feature)."""
    if surface == "chat":
        fmt = body.get("response_format")
    elif surface == "responses":
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
    else:
        config = body.get("output_config")
        fmt = config.get("format") if isinstance(config, dict) else None
        fmt = fmt if fmt is not None else body.get("output_format")  # the earlier beta field
    if fmt is None:
        return False
    return not (isinstance(fmt, dict) and fmt.get("type") == "text")


def _has_image(body: dict[str, Any], surface: str) -> bool:
    image_types = _IMAGE_PARTS.get(surface)
    if image_types is None:
        return False
    items = body.get("input") if surface == "responses" else body.get("messages")
    if not isinstance(items, list):
        return False
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") in image_types:  # a bare content part as a Responses input item
            return True
        # Message content, and tool results that carry content of their own.
        for key in ("content", "output"):
            if _parts_have_image(item.get(key), image_types):
                return True
    return False


def _parts_have_image(parts: object, image_types: frozenset[str]) -> bool:
    if not isinstance(parts, list):
        return False
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") in image_types:
            return True
        nested = part.get("content")  # Anthropic tool_result blocks hold content blocks
        if isinstance(nested, list) and _any_image(nested, image_types):
            return True
    return False


def _any_image(parts: Iterable[object], image_types: frozenset[str]) -> bool:
    return any(isinstance(part, dict) and part.get("type") in image_types for part in parts)
