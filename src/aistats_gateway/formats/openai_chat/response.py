"""Whole (non-streamed) answers: a provider's ``chat.completion`` as a canonical
:class:`Response`, and a canonical Response as the ``chat.completion`` a client gets.

Provider side: reasoning comes from ``message.reasoning_content`` (DeepSeek, vLLM < 0.10) or
``message.reasoning`` (vLLM ≥ 0.10, Ollama, OpenRouter), never both; a ``refusal`` is the
answer's text (the client must see it); a finish ``stop`` while tool calls were made is read as
``tool_calls`` (some servers, e.g. older Ollama, report ``stop``: clients only run tools on
``tool_calls``).

Client side: reasoning is returned as ``message.reasoning_content`` (never as an extra choice);
thinking signatures are not expressible in chat and are left out.
"""

from __future__ import annotations

import secrets
from typing import Any

from ...api.errors import GatewayError
from ...canonical import (
    FinishReason,
    Part,
    Response,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
)
from ..base import ResponseContext
from .maps import FINISH_FROM_CHAT, FINISH_TO_CHAT, usage_from_chat, usage_to_chat

REASONING_FIELDS = ("reasoning_content", "reasoning")


def new_call_id() -> str:
    """A tool-call id for a provider that gave none."""
    return "call_" + secrets.token_hex(8)


def finish_from_chat(value: Any, made_tool_calls: bool) -> FinishReason:
    """The canonical finish reason for a chat ``finish_reason`` (see the module docstring)."""
    reason = FINISH_FROM_CHAT.get(value, "stop") if isinstance(value, str) else "stop"
    if reason == "stop" and made_tool_calls:
        return "tool_calls"
    return reason


def reasoning_of(message: dict[str, Any]) -> str:
    """The reasoning text of a chat message or delta, from the first field that has any."""
    for name in REASONING_FIELDS:
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def content_text(content: Any) -> str:
    """A message's ``content``: a string, or (some servers) an array of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def provider_error(body: dict[str, Any]) -> GatewayError:
    """The error a provider reported inside a 200 body or a stream chunk."""
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    return GatewayError("provider_error", str(message or "The provider reported an error"))


def decode_response(body: dict[str, Any]) -> Response:
    """Read a provider's complete ``chat.completion`` (its first choice)."""
    if "error" in body and not body.get("choices"):
        raise provider_error(body)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise GatewayError("provider_error", "The provider's chat completion has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    parts: list[Part] = []
    thinking = reasoning_of(message)
    if thinking:
        parts.append(ThinkingPart(text=thinking))
    text = content_text(message.get("content")) or str(message.get("refusal") or "")
    if text:
        parts.append(TextPart(text))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(
            ToolCallPart(
                id=call.get("id") or new_call_id(),
                name=str(function.get("name") or ""),
                arguments=str(function.get("arguments") or ""),
            )
        )
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        parts.append(
            ToolCallPart(new_call_id(), str(legacy.get("name") or ""), str(legacy.get("arguments") or ""))
        )
    made_calls = any(isinstance(part, ToolCallPart) for part in parts)
    return Response(
        parts=parts,
        finish_reason=finish_from_chat(choice.get("finish_reason"), made_calls),
        usage=usage_from_chat(body.get("usage")),
        id=body.get("id"),
        model=body.get("model"),
    )


def encode_response(response: Response, ctx: ResponseContext, cost_usd: float) -> dict[str, Any]:
    """The ``chat.completion`` body for ``response`` (``usage.cost`` in USD included)."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in response.parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ThinkingPart):
            thinking.append(part.text)
        elif isinstance(part, ToolCallPart):
            calls.append(
                {
                    "id": part.id,
                    "type": "function",
                    "function": {"name": part.name, "arguments": part.arguments},
                }
            )
    text = "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    reasoning = "".join(thinking)
    if reasoning:
        message["reasoning_content"] = reasoning
    return {
        "id": ctx.generation_id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH_TO_CHAT[response.finish_reason],
            }
        ],
        "usage": usage_to_chat(response.usage or Usage(), cost_usd),
        "system_fingerprint": None,
    }
