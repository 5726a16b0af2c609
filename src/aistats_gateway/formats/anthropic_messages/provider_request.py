"""Provider side: canonical Request → Anthropic Messages request body.

Rules that are not a plain rename (each is pinned by a test):

* ``max_tokens`` (required by Anthropic) = the request's output allowance, else the catalog's
  ``target.max_output_tokens`` — the amount the wallet reservation assumed, never more.
* Reasoning → ``thinking {type: "enabled", budget_tokens: max(1024, budget)}`` (``display:
  "omitted"`` when thoughts are not wanted; an explicit budget of 0 means no thinking). Anthropic
  wants ``budget_tokens < max_tokens``: an explicit budget the caller paired with a too-small
  ``max_tokens`` is a 400 naming ``max_tokens``; a budget derived from an effort level (or with
  no caller ``max_tokens``) is lowered to ``max_tokens - 1`` instead, and a 400 only when that
  falls below 1024. ``max_tokens`` is never raised: it would exceed the reservation.
* With thinking, Anthropic refuses ``temperature`` other than 1, any ``top_k``, ``top_p`` below
  0.95 and forced tool use (``any``/``tool``, which structured output needs): each is a 400
  naming the parameter, rather than a silent change of the request.
* Structured output rides on a synthetic tool ``aistats_structured_output`` whose
  ``input_schema`` is the schema (``{"type": "object"}`` for json_object). It is forced with
  ``tool_choice {type: "tool"}`` when the model has no other tool to call (or ``tool_choice`` is
  none); with client tools and auto/required it becomes ``{type: "any"}`` (call a tool, or answer
  through the synthetic one); a named tool choice is kept.
* Messages alternate: consecutive same-role messages are merged, and in a user turn the
  ``tool_result`` blocks come first (Anthropic's rule). Empty text parts are skipped, and so are
  thinking parts without a signature (from another provider): Anthropic rejects unsigned
  thinking and does not use earlier turns' thinking anyway. Image ``detail`` hints have no
  Anthropic counterpart and are ignored.
* ``Request.extras``: ``service_tier``, ``inference_geo``, ``speed`` and
  ``output_config.effort`` are passed on; every other key is a 400 naming it and the provider.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from ...api.errors import GatewayError, invalid
from ...canonical import (
    ImagePart,
    Message,
    Part,
    Reasoning,
    Request,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
)
from ..base import Target
from .request import MIN_THINKING_BUDGET
from .wire import (
    FORMAT_NAME,
    STRUCTURED_TOOL,
    STRUCTURED_TOOL_DESCRIPTION,
    parse_input,
    tool_choice_to_wire,
    tool_id,
)

_FORCING_CHOICES = frozenset({"any", "tool"})
_SERVICE_TIERS: dict[str, str] = {
    "auto": "auto",
    "standard_only": "standard_only",
    "default": "standard_only",
}
_SPEEDS = frozenset({"standard", "fast"})
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})


def unsupported(param: str, target: Target, why: str = "") -> GatewayError:
    """The 400 for a parameter this provider format cannot express."""
    reason = f": {why}" if why else ""
    return invalid(
        f"'{param}' is not supported by provider '{target.provider}' ({FORMAT_NAME}){reason}", param=param
    )


def encode_request(request: Request, target: Target) -> dict[str, Any]:
    """The Messages body for ``request`` sent to ``target`` (raises a 400 for what cannot be sent)."""
    max_tokens = request.max_output_tokens or target.max_output_tokens
    thinking = _thinking(request, max_tokens, target)
    body: dict[str, Any] = {"model": target.model, "max_tokens": max_tokens}
    system = [part.text for part in request.system if part.text]
    if len(system) == 1:
        body["system"] = system[0]
    elif system:
        body["system"] = [{"type": "text", "text": text} for text in system]
    body["messages"] = _messages(request.messages)
    _tools(request, body, target, thinking_on=thinking is not None)
    if thinking is not None:
        _check_sampling_with_thinking(request, target)
        body["thinking"] = thinking
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    if request.stream:
        body["stream"] = True
    for param, value in request.extras.items():
        encoder = _EXTRA_ENCODERS.get(param)
        if encoder is None:
            raise unsupported(param, target)
        encoder(value, body, target)
    return body


# --- thinking --------------------------------------------------------------------------------


def _thinking(request: Request, max_tokens: int, target: Target) -> dict[str, Any] | None:
    reasoning: Reasoning | None = request.reasoning
    if reasoning is None or reasoning.budget_tokens == 0:
        return None
    budget = max(MIN_THINKING_BUDGET, reasoning.budget())
    if budget >= max_tokens:
        if reasoning.budget_tokens is not None and request.max_output_tokens is not None:
            raise invalid(
                f"max_tokens ({max_tokens}) must be greater than the thinking budget ({budget}) "
                f"for provider '{target.provider}' ({FORMAT_NAME})",
                param="max_tokens",
            )
        budget = max_tokens - 1
        if budget < MIN_THINKING_BUDGET:
            raise invalid(
                f"max_tokens ({max_tokens}) leaves no room for the minimum thinking budget "
                f"({MIN_THINKING_BUDGET}) on provider '{target.provider}' ({FORMAT_NAME})",
                param="max_tokens",
            )
    thinking: dict[str, Any] = {"type": "enabled", "budget_tokens": budget}
    if not reasoning.include_thoughts:
        thinking["display"] = "omitted"
    return thinking


def _check_sampling_with_thinking(request: Request, target: Target) -> None:
    why = "Anthropic does not allow it together with thinking (reasoning)"
    if request.temperature is not None and request.temperature != 1:
        raise unsupported("temperature", target, why + " unless it is 1")
    if request.top_k is not None:
        raise unsupported("top_k", target, why)
    if request.top_p is not None and not 0.95 <= request.top_p <= 1:
        raise unsupported("top_p", target, why + " unless it is between 0.95 and 1")


# --- tools -----------------------------------------------------------------------------------


def _tool(tool: Tool) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        wire["description"] = tool.description
    wire["input_schema"] = tool.parameters or {"type": "object", "properties": {}}
    if tool.strict:
        wire["strict"] = True
    return wire


def _tools(request: Request, body: dict[str, Any], target: Target, *, thinking_on: bool) -> None:
    tools = [_tool(tool) for tool in request.tools]
    if any(tool.name == STRUCTURED_TOOL for tool in request.tools):
        raise invalid(f"tools: the tool name '{STRUCTURED_TOOL}' is reserved by the gateway", param="tools")
    choice = request.tool_choice
    if choice is not None and choice.mode == "tool" and choice.name not in {t.name for t in request.tools}:
        raise invalid(f"tool_choice: no tool named '{choice.name}' in tools", param="tool_choice")
    wire_choice = tool_choice_to_wire(choice) if choice is not None and tools else None
    fmt = request.output_format
    if fmt is not None and fmt.type != "text":
        schema = fmt.schema if fmt.type == "json_schema" and fmt.schema else {"type": "object"}
        answer_tool: dict[str, Any] = {
            "name": STRUCTURED_TOOL,
            "description": STRUCTURED_TOOL_DESCRIPTION,
            "input_schema": schema,
        }
        if fmt.strict:
            answer_tool["strict"] = True
        mode = choice.mode if choice is not None else "auto"
        if not tools or mode == "none":
            wire_choice = {"type": "tool", "name": STRUCTURED_TOOL}
        elif mode in ("auto", "required"):
            wire_choice = {"type": "any"}
        tools.append(answer_tool)
        if thinking_on:
            raise unsupported(
                "reasoning",
                target,
                "structured output needs forced tool use, which Anthropic refuses together with thinking",
            )
    if not tools:
        return
    if request.parallel_tool_calls is False and (wire_choice is None or wire_choice["type"] != "none"):
        wire_choice = {**(wire_choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if thinking_on and wire_choice is not None and wire_choice["type"] in _FORCING_CHOICES:
        raise unsupported(
            "tool_choice",
            target,
            "Anthropic does not allow forced tool use together with thinking (reasoning)",
        )
    body["tools"] = tools
    if wire_choice is not None:
        body["tool_choice"] = wire_choice


# --- messages --------------------------------------------------------------------------------


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        blocks = [block for part in message.parts if (block := _block(part)) is not None]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": message.role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # Stable sort: tool results first, everything else after, each in its own order.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return turns


def _block(part: Part) -> dict[str, Any] | None:
    match part:
        case TextPart():
            return _text(part)
        case ImagePart():
            return _image(part)
        case ToolCallPart():
            return _tool_call(part)
        case ToolResultPart():
            return _tool_result(part)
        case ThinkingPart():
            return _thinking_part(part)
    return None


def _text(part: TextPart) -> dict[str, Any] | None:
    return {"type": "text", "text": part.text} if part.text else None


def _image(part: ImagePart) -> dict[str, Any]:
    return {"type": "image", "source": _image_source(part)}


def _image_source(part: ImagePart) -> dict[str, Any]:
    if part.data is not None:
        if not part.media_type:
            raise invalid("messages: an inline image needs its media type", param="messages")
        return {"type": "base64", "media_type": part.media_type, "data": part.data}
    url = part.url or ""
    if url.startswith("data:"):
        header, sep, data = url[len("data:") :].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise invalid(
                "messages: image data URLs must be data:<media type>;base64,<data>", param="messages"
            )
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise invalid("messages: the image data URL is not valid base64", param="messages") from exc
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise invalid("messages: images must be http(s) URLs or inline base64 data", param="messages")


def _tool_call(part: ToolCallPart) -> dict[str, Any]:
    value = parse_input(part.arguments)
    if value is None:
        raise invalid(
            f"messages: the arguments of tool call '{part.id}' ({part.name}) are not a JSON object",
            param="messages",
        )
    return {"type": "tool_use", "id": tool_id(part.id), "name": part.name, "input": value}


def _tool_result(part: ToolResultPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(part.call_id)}
    content = [item for item in part.content if not (isinstance(item, TextPart) and not item.text)]
    if len(content) == 1 and isinstance(content[0], TextPart):
        block["content"] = content[0].text
    elif content:
        block["content"] = [_text(item) if isinstance(item, TextPart) else _image(item) for item in content]
    if part.is_error:
        block["is_error"] = True
    return block


def _thinking_part(part: ThinkingPart) -> dict[str, Any] | None:
    if part.redacted_data is not None:
        return {"type": "redacted_thinking", "data": part.redacted_data}
    if part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


# --- extras ----------------------------------------------------------------------------------


def _service_tier(value: Any, body: dict[str, Any], target: Target) -> None:
    if value not in _SERVICE_TIERS:
        raise unsupported("service_tier", target, f"the value {value!r} (Anthropic has auto, standard_only)")
    body["service_tier"] = _SERVICE_TIERS[value]


def _inference_geo(value: Any, body: dict[str, Any], target: Target) -> None:
    if not isinstance(value, str):
        raise unsupported("inference_geo", target, "it must be a string")
    body["inference_geo"] = value


def _speed(value: Any, body: dict[str, Any], target: Target) -> None:
    if value not in _SPEEDS:
        raise unsupported("speed", target, f"the value {value!r} (Anthropic has standard, fast)")
    body["speed"] = value


def _effort(value: Any, body: dict[str, Any], target: Target) -> None:
    if value not in _EFFORTS:
        raise unsupported("output_config.effort", target, f"the value {value!r}")
    body.setdefault("output_config", {})["effort"] = value


_EXTRA_ENCODERS: dict[str, Callable[[Any, dict[str, Any], Target], None]] = {
    "service_tier": _service_tier,
    "inference_geo": _inference_geo,
    "speed": _speed,
    "output_config.effort": _effort,
}
