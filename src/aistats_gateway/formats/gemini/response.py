"""Gemini ``GenerateContentResponse`` → canonical :class:`Response` (provider side).

Also holds what the stream decoder shares with it: the finish-reason map, usage, tool-call ids
and the JSON text of a call's ``args``.

Thought signatures: Gemini puts an opaque ``thoughtSignature`` on whichever part it likes (a
thought, a text, the first ``functionCall`` of a step). Canonically a signature lives on a
:class:`ThinkingPart`, placed where the encoder (:mod:`.request`) puts it back:

- on a thought part: that ``ThinkingPart``'s ``signature``;
- on a ``functionCall``: just before the call (on the directly preceding signature-less
  ``ThinkingPart``, else on a new ``ThinkingPart("")``);
- on any other part (text): a ``ThinkingPart("")`` just after it.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ...canonical import (
    FinishReason,
    ImagePart,
    Part,
    Response,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
    token_count,
)

# Gemini finishReason -> canonical. STOP becomes "tool_calls" when the answer holds a call
# (Gemini says STOP for function calls too). Unlisted or unknown values read as "stop".
FINISH_REASONS: dict[str, FinishReason] = {
    "FINISH_REASON_UNSPECIFIED": "stop",
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "CONTINUATION": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
    "ESCALATION": "content_filter",
    "PUP_LIMITED_DISABLED": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "MALFORMED_RESPONSE": "error",
    "MISSING_THOUGHT_SIGNATURE": "error",
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "IMAGE_OTHER": "stop",
    "NO_IMAGE": "stop",
}


def finish_reason(native: str | None, saw_tool_call: bool) -> FinishReason:
    """The canonical finish reason for Gemini's ``finishReason`` (None: the answer just ended)."""
    reason = FINISH_REASONS.get(native or "STOP", "stop")
    if reason == "stop" and saw_tool_call:
        return "tool_calls"
    return reason


def blocked_prompt(payload: dict[str, Any]) -> bool:
    """Whether the prompt itself was blocked (``promptFeedback.blockReason``, no candidates)."""
    feedback = payload.get("promptFeedback") or {}
    return not payload.get("candidates") and bool(feedback.get("blockReason"))


def usage_from_metadata(metadata: dict[str, Any] | None) -> Usage | None:
    """Canonical usage from ``usageMetadata``.

    ``promptTokenCount`` already includes ``cachedContentTokenCount``; tool-use prompt tokens
    are input too. ``candidatesTokenCount`` excludes thoughts, so output = candidates + thoughts.
    Audio and image tokens come from the per-modality ``promptTokensDetails`` (less the cached
    ones of ``cacheTokensDetails``, which are billed once, as cached) and
    ``candidatesTokensDetails``.
    """
    if not metadata:
        return None
    thoughts = token_count(metadata, "thoughtsTokenCount")
    prompt = _by_modality(metadata.get("promptTokensDetails"))
    cached = _by_modality(metadata.get("cacheTokensDetails"))
    candidates = _by_modality(metadata.get("candidatesTokensDetails"))
    return Usage(
        input_tokens=token_count(metadata, "promptTokenCount")
        + token_count(metadata, "toolUsePromptTokenCount"),
        cached_input_tokens=token_count(metadata, "cachedContentTokenCount"),
        output_tokens=token_count(metadata, "candidatesTokenCount") + thoughts,
        reasoning_tokens=thoughts,
        input_audio_tokens=max(prompt.get("AUDIO", 0) - cached.get("AUDIO", 0), 0),
        input_image_tokens=max(prompt.get("IMAGE", 0) - cached.get("IMAGE", 0), 0),
        output_audio_tokens=candidates.get("AUDIO", 0),
        output_image_tokens=candidates.get("IMAGE", 0),
    )


def _by_modality(details: Any) -> dict[str, int]:
    """Token counts by modality from a ``[{modality, tokenCount}]`` list (malformed rows skipped)."""
    counts: dict[str, int] = {}
    if not isinstance(details, list):
        return counts
    for row in details:
        if not isinstance(row, dict):
            continue
        modality, count = row.get("modality"), row.get("tokenCount")
        if isinstance(modality, str) and isinstance(count, int) and not isinstance(count, bool):
            counts[modality] = counts.get(modality, 0) + max(count, 0)
    return counts


def new_call_id() -> str:
    """A tool-call id for a ``functionCall`` that came without one: ``call_<16 hex>``."""
    return "call_" + secrets.token_hex(8)


def call_id(function_call: dict[str, Any]) -> str:
    """The call's own ``id`` when Gemini gave one, else a new one."""
    given = function_call.get("id")
    return str(given) if given else new_call_id()


def arguments_json(args: Any) -> str:
    """The JSON text of a call's ``args`` object, keys in the order received."""
    return json.dumps(args if args is not None else {}, separators=(",", ":"), ensure_ascii=False)


def candidate_parts(payload: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The first candidate and its content parts (an empty list when it has none)."""
    candidates = payload.get("candidates") or []
    if not candidates or not isinstance(candidates[0], dict):
        return None, []
    content = candidates[0].get("content") or {}
    parts = [p for p in content.get("parts") or [] if isinstance(p, dict)]
    return candidates[0], parts


def _content_part(part: dict[str, Any]) -> Part | None:
    """A non-thought part: text, function call or inline image; None for anything else."""
    function_call = part.get("functionCall")
    if isinstance(function_call, dict):
        return ToolCallPart(
            id=call_id(function_call),
            name=str(function_call.get("name") or ""),
            arguments=arguments_json(function_call.get("args")),
        )
    if isinstance(part.get("text"), str):
        return TextPart(part["text"])
    inline = part.get("inlineData")
    if isinstance(inline, dict) and inline.get("data"):
        return ImagePart(data=str(inline["data"]), media_type=inline.get("mimeType"))
    return None


def response_parts(parts: list[dict[str, Any]]) -> list[Part]:
    """Canonical output parts, in order, with thought signatures placed as the module says."""
    out: list[Part] = []
    for part in parts:
        signature = part.get("thoughtSignature")
        if part.get("thought") is True:
            out.append(ThinkingPart(str(part.get("text") or ""), signature=signature))
            continue
        content = _content_part(part)
        if isinstance(content, ToolCallPart) and signature:
            previous = out[-1] if out else None
            if isinstance(previous, ThinkingPart) and previous.signature is None:
                previous.signature = signature
            else:
                out.append(ThinkingPart("", signature=signature))
            signature = None
        if content is not None and not (isinstance(content, TextPart) and not content.text):
            out.append(content)
        if signature:
            out.append(ThinkingPart("", signature=signature))
    return out


def decode_response(body: dict[str, Any]) -> Response:
    """A whole ``generateContent`` answer (first candidate) as a canonical Response."""
    candidate, parts = candidate_parts(body)
    out = response_parts(parts)
    if blocked_prompt(body):
        reason: FinishReason = "content_filter"
    else:
        native = candidate.get("finishReason") if candidate else None
        reason = finish_reason(native, any(isinstance(p, ToolCallPart) for p in out))
    return Response(
        parts=out,
        finish_reason=reason,
        usage=usage_from_metadata(body.get("usageMetadata")),
        id=body.get("responseId"),
        model=body.get("modelVersion"),
    )
