"""Whole (non-streamed) messages: canonical Response ⇄ Anthropic ``message`` object.

Client side, :func:`encode_response` writes the gateway's answer as a ``message``; provider
side, :func:`decode_response` reads Anthropic's. Tool-call ``input`` objects become the JSON text
canonical parts carry, and back. The synthetic structured-output tool's input is the answer's
text (finish "stop", unless a real tool was called as well).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...api.errors import GatewayError
from ...canonical import (
    FinishReason,
    Part,
    Response,
    TextPart,
    ThinkingPart,
    ToolCallPart,
)
from ...ids import derive
from ..base import ResponseContext
from .wire import (
    FINISH_TO_STOP,
    STOP_TO_FINISH,
    STRUCTURED_TOOL,
    dumps_arguments,
    parse_input,
    tool_id,
    usage_from_wire,
    usage_to_wire,
)

# --- client side -----------------------------------------------------------------------------


def encode_response(response: Response, ctx: ResponseContext, cost_usd: float) -> dict[str, Any]:
    """The Anthropic ``message`` for a canonical answer, with ``usage.cost`` in USD.

    Tool arguments that are not a JSON object cannot be an Anthropic ``input``: rather than
    invent one, this raises a ``provider_error`` naming the tool (the model's output was broken).
    """
    content = [block for part in response.parts if (block := _content_block(part)) is not None]
    stop_sequence = response.stop_sequence if response.finish_reason == "stop_sequence" else None
    return {
        "id": derive(ctx.generation_id, "msg_"),
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": FINISH_TO_STOP[response.finish_reason],
        "stop_sequence": stop_sequence,
        "usage": usage_to_wire(response.usage, cost_usd),
    }


def _content_block(part: Part) -> dict[str, Any] | None:
    match part:
        case ThinkingPart(redacted_data=str() as data):
            return {"type": "redacted_thinking", "data": data}
        case ThinkingPart():
            return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
        case TextPart():
            # Anthropic never sends empty text blocks; skipping them never drops produced text.
            return {"type": "text", "text": part.text} if part.text else None
        case ToolCallPart():
            value = parse_input(part.arguments)
            if value is None:
                raise GatewayError(
                    "provider_error",
                    f"the model returned arguments for tool '{part.name}' that are not a JSON object",
                )
            return {"type": "tool_use", "id": tool_id(part.id), "name": part.name, "input": value}
    return None  # images and tool results are never model output


# --- provider side ---------------------------------------------------------------------------


def decode_response(body: dict[str, Any]) -> Response:
    """A canonical Response from an Anthropic ``message`` object."""
    parts: list[Part] = []
    real_tool_call = False
    for block in body.get("content") or []:
        part = _part(block)
        if part is not None:
            parts.append(part)
            real_tool_call = real_tool_call or isinstance(part, ToolCallPart)
    stop_reason = body.get("stop_reason")
    finish: FinishReason = STOP_TO_FINISH.get(stop_reason or "", "stop")
    if finish == "tool_calls" and not real_tool_call:
        finish = "stop"  # only the structured-output tool was called: that is the answer
    return Response(
        parts=parts,
        finish_reason=finish,
        usage=usage_from_wire(body.get("usage")),
        stop_sequence=body.get("stop_sequence"),
        id=body.get("id"),
        model=body.get("model"),
    )


def _part(block: Any) -> Part | None:
    """One content block as a part; block types canonical cannot carry (server tools the gateway
    never enables) are skipped."""
    if not isinstance(block, dict):
        return None
    decoder = _BLOCK_PARTS.get(block.get("type"))  # type: ignore[arg-type]
    return decoder(block) if decoder is not None else None


def _text_part(block: dict[str, Any]) -> Part:
    return TextPart(str(block.get("text") or ""))


def _thinking_part(block: dict[str, Any]) -> Part:
    return ThinkingPart(text=str(block.get("thinking") or ""), signature=block.get("signature") or None)


def _redacted_part(block: dict[str, Any]) -> Part:
    return ThinkingPart(text="", redacted_data=str(block.get("data") or ""))


def _tool_use_part(block: dict[str, Any]) -> Part:
    arguments = dumps_arguments(block.get("input") or {})
    if block.get("name") == STRUCTURED_TOOL:
        return TextPart(arguments)
    return ToolCallPart(id=str(block.get("id") or ""), name=str(block.get("name") or ""), arguments=arguments)


_BLOCK_PARTS: dict[str, Callable[[dict[str, Any]], Part]] = {
    "text": _text_part,
    "thinking": _thinking_part,
    "redacted_thinking": _redacted_part,
    "tool_use": _tool_use_part,
}
