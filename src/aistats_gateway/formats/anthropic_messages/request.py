"""Client side: an Anthropic Messages request body (``POST /v1/messages``) → canonical Request.

Validation follows the real API where a client would otherwise be surprised later: ``model``,
``max_tokens`` and ``messages`` are required, the thinking budget must be ≥ 1024 and below
``max_tokens``, and anything the gateway cannot carry to every provider is refused with a 400
naming the parameter. Top-level parameters fall in four groups (tables below): handled, ignored
(cache hints that change nothing in the answer), kept in ``Request.extras`` for the provider
encoder to honour or refuse, and refused outright (they need Anthropic-side state or server
tools the gateway cannot provide). Unknown parameters are refused, as the real API does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from ...api.errors import invalid
from ...canonical import (
    ImagePart,
    Message,
    OutputFormat,
    Part,
    Reasoning,
    Request,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from .wire import TOOL_CHOICE_MODES, dumps_arguments

MIN_THINKING_BUDGET = 1024

_HANDLED = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "stream",
        "output_config",
        "output_format",
    }
)
# Prompt-cache hints and diagnostics: they never change the answer, so they are dropped.
_IGNORED = frozenset({"cache_control", "diagnostics"})
# Kept for the provider encoder, which maps them faithfully or refuses them by name.
_EXTRAS = frozenset({"service_tier", "inference_geo", "speed"})
# Cannot work through the gateway, whichever provider serves the request.
_REFUSED: dict[str, str] = {
    "container": "code-execution containers need Anthropic server tools, which the gateway does not offer",
    "mcp_servers": "the MCP connector runs tools on Anthropic's side; define client tools instead",
    "context_management": "context editing needs Anthropic-side state the gateway cannot offer",
    "user_profile_id": "the gateway calls providers with its own credentials",
    "workspace_id": "the gateway calls providers with its own credentials",
}
_TOOL_KEYS = frozenset(
    {"type", "name", "description", "input_schema", "strict", "cache_control", "eager_input_streaming"}
)
_TOOL_CHOICE_KEYS = frozenset({"type", "name", "disable_parallel_tool_use"})
_THINKING_DISPLAY_INCLUDES: dict[str | None, bool] = {None: True, "summarized": True, "omitted": False}


def decode_request(body: dict[str, Any]) -> Request:
    """Decode and validate a Messages request body; raise a 400 naming the first bad parameter."""
    _check_parameters(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: Field required (a model id string)", param="model")
    max_tokens = _max_tokens(body)
    request = Request(
        model=model,
        messages=_messages(body.get("messages")),
        system=_system(body.get("system")),
        max_output_tokens=max_tokens,
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        top_k=_top_k(body),
        stop=_stop_sequences(body.get("stop_sequences")),
        stream=_stream(body.get("stream")),
        user=_user(body.get("metadata")),
        tools=_tools(body.get("tools")),
    )
    _tool_choice(body.get("tool_choice"), request)
    request.reasoning = _thinking(body.get("thinking"), max_tokens)
    _output_config(body, request)
    for name in _EXTRAS & body.keys():
        if body[name] is not None:
            request.extras[name] = body[name]
    return request


# --- top level -------------------------------------------------------------------------------


def _check_parameters(body: dict[str, Any]) -> None:
    for name in body:
        if name in _REFUSED:
            raise invalid(f"'{name}' is not supported by this gateway: {_REFUSED[name]}", param=name)
        if name not in _HANDLED and name not in _IGNORED and name not in _EXTRAS:
            raise invalid(f"{name}: Extra inputs are not permitted", param=name)


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise invalid("max_tokens: Field required", param="max_tokens")
    if not _is_int(value) or value < 1:
        raise invalid("max_tokens: must be an integer ≥ 1", param="max_tokens")
    return int(value)


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name}: must be a number", param=name)
    return float(value)


def _top_k(body: dict[str, Any]) -> int | None:
    value = body.get("top_k")
    if value is None:
        return None
    if not _is_int(value) or value < 0:
        raise invalid("top_k: must be an integer ≥ 0", param="top_k")
    return int(value)


def _stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid("stop_sequences: must be a list of strings", param="stop_sequences")
    return list(value)


def _stream(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid("stream: must be a boolean", param="stream")
    return value


def _user(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise invalid("metadata: must be an object", param="metadata")
    for key in metadata:
        if key != "user_id":
            raise invalid(f"metadata.{key}: Extra inputs are not permitted", param=f"metadata.{key}")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise invalid("metadata.user_id: must be a string", param="metadata.user_id")
    return user


def _system(value: Any) -> list[TextPart]:
    if value is None:
        return []
    if isinstance(value, str):
        return [TextPart(value)] if value else []
    if not isinstance(value, list):
        raise invalid("system: must be a string or a list of text blocks", param="system")
    parts: list[TextPart] = []
    for index, block in enumerate(value):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            raise invalid(f"system.{index}: only text blocks are allowed in system", param="system")
        parts.append(TextPart(block["text"]))
    return parts


# --- messages --------------------------------------------------------------------------------


def _messages(value: Any) -> list[Message]:
    if value is None:
        raise invalid("messages: Field required", param="messages")
    if not isinstance(value, list) or not value:
        raise invalid("messages: at least one message is required", param="messages")
    messages: list[Message] = []
    for index, message in enumerate(value):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise invalid(f"{where}: must be an object with role and content", param="messages")
        role = message.get("role")
        if role not in _BLOCK_DECODERS:
            raise invalid(f"{where}.role: must be 'user' or 'assistant'", param="messages")
        content = message.get("content")
        if isinstance(content, str):
            parts: list[Part] = [TextPart(content)]
        elif isinstance(content, list):
            parts = [_block(role, block, f"{where}.content.{i}") for i, block in enumerate(content)]
        else:
            raise invalid(f"{where}.content: must be a string or a list of blocks", param="messages")
        messages.append(Message(role=role, parts=parts))
    return messages


def _block(role: str, block: Any, where: str) -> Part:
    if not isinstance(block, dict):
        raise invalid(f"{where}: a content block must be an object", param="messages")
    kind = block.get("type")
    decoder = _BLOCK_DECODERS[role].get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise invalid(
            f"{where}: content block type '{kind}' is not supported in {role} messages by this gateway",
            param="messages",
        )
    return decoder(block, where)


def _text(block: dict[str, Any], where: str) -> TextPart:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"{where}.text: must be a string", param="messages")
    return TextPart(text)


def _image(block: dict[str, Any], where: str) -> ImagePart:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{where}.source: Field required", param="messages")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise invalid(f"{where}.source: base64 images need media_type and data", param="messages")
        return ImagePart(data=data, media_type=media_type)
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise invalid(f"{where}.source.url: Field required", param="messages")
        if url.startswith("data:"):
            return _data_url_image(url, where)
        return ImagePart(url=url)
    raise invalid(
        f"{where}.source.type: image source '{kind}' is not supported by this gateway "
        "(use 'base64' or 'url')",
        param="messages",
    )


def _data_url_image(url: str, where: str) -> ImagePart:
    header, sep, data = url[len("data:") :].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise invalid(
            f"{where}.source.url: data URLs must be data:<media type>;base64,<data>", param="messages"
        )
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"{where}.source.url: the data URL is not valid base64", param="messages") from exc
    return ImagePart(data=data, media_type=media_type)


def _tool_use(block: dict[str, Any], where: str) -> ToolCallPart:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise invalid(f"{where}: tool_use blocks need id and name", param="messages")
    if not isinstance(arguments, dict):
        raise invalid(f"{where}.input: must be an object", param="messages")
    return ToolCallPart(id=call_id, name=name, arguments=dumps_arguments(arguments))


def _tool_result(block: dict[str, Any], where: str) -> ToolResultPart:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str):
        raise invalid(f"{where}.tool_use_id: Field required", param="messages")
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise invalid(f"{where}.is_error: must be a boolean", param="messages")
    content = block.get("content")
    parts: list[TextPart | ImagePart]
    if content is None:
        parts = []
    elif isinstance(content, str):
        parts = [TextPart(content)] if content else []
    elif isinstance(content, list):
        parts = [_tool_result_block(item, f"{where}.content.{i}") for i, item in enumerate(content)]
    else:
        raise invalid(f"{where}.content: must be a string or a list of blocks", param="messages")
    return ToolResultPart(call_id=call_id, content=parts, is_error=is_error)


def _tool_result_block(block: Any, where: str) -> TextPart | ImagePart:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        return _text(block, where)
    if kind == "image":
        return _image(block, where)
    raise invalid(
        f"{where}: tool_result content block type '{kind}' is not supported by this gateway "
        "(use text or image)",
        param="messages",
    )


def _thinking_block(block: dict[str, Any], where: str) -> ThinkingPart:
    text, signature = block.get("thinking"), block.get("signature")
    if not isinstance(text, str) or not isinstance(signature, str):
        raise invalid(f"{where}: thinking blocks need thinking and signature", param="messages")
    return ThinkingPart(text=text, signature=signature)


def _redacted_thinking(block: dict[str, Any], where: str) -> ThinkingPart:
    data = block.get("data")
    if not isinstance(data, str):
        raise invalid(f"{where}.data: Field required", param="messages")
    return ThinkingPart(text="", redacted_data=data)


_BlockDecoder = Callable[[dict[str, Any], str], Part]
_BLOCK_DECODERS: dict[str, dict[str, _BlockDecoder]] = {
    "user": {"text": _text, "image": _image, "tool_result": _tool_result},
    "assistant": {
        "text": _text,
        "tool_use": _tool_use,
        "thinking": _thinking_block,
        "redacted_thinking": _redacted_thinking,
    },
}


# --- tools, thinking, structured output -------------------------------------------------------


def _tools(value: Any) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid("tools: must be a list", param="tools")
    return [_tool(tool, index) for index, tool in enumerate(value)]


def _tool(tool: Any, index: int) -> Tool:
    where = f"tools.{index}"
    if not isinstance(tool, dict):
        raise invalid(f"{where}: must be an object", param="tools")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise invalid(
            f"{where}: server tool type '{kind}' is not supported by this gateway (only custom tools)",
            param="tools",
        )
    for key in tool:
        if key not in _TOOL_KEYS:
            raise invalid(f"{where}.{key}: is not supported by this gateway", param="tools")
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name:
        raise invalid(f"{where}.name: Field required", param="tools")
    if not isinstance(schema, dict):
        raise invalid(f"{where}.input_schema: Field required (a JSON Schema object)", param="tools")
    description, strict = tool.get("description"), tool.get("strict")
    if description is not None and not isinstance(description, str):
        raise invalid(f"{where}.description: must be a string", param="tools")
    if strict is not None and not isinstance(strict, bool):
        raise invalid(f"{where}.strict: must be a boolean", param="tools")
    return Tool(name=name, description=description, parameters=schema, strict=strict)


def _tool_choice(value: Any, request: Request) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") not in TOOL_CHOICE_MODES:
        raise invalid("tool_choice: type must be one of auto, any, tool, none", param="tool_choice")
    for key in value:
        if key not in _TOOL_CHOICE_KEYS:
            raise invalid(f"tool_choice.{key}: Extra inputs are not permitted", param="tool_choice")
    mode = TOOL_CHOICE_MODES[value["type"]]
    name = value.get("name")
    if mode == "tool":
        if not isinstance(name, str) or not name:
            raise invalid("tool_choice.name: Field required for type 'tool'", param="tool_choice")
        if name not in {tool.name for tool in request.tools}:
            raise invalid(f"tool_choice.name: no tool named '{name}' in tools", param="tool_choice")
    request.tool_choice = ToolChoice(mode=mode, name=name if mode == "tool" else None)  # type: ignore[arg-type]
    disable = value.get("disable_parallel_tool_use")
    if disable is not None:
        if not isinstance(disable, bool):
            raise invalid("tool_choice.disable_parallel_tool_use: must be a boolean", param="tool_choice")
        request.parallel_tool_calls = not disable


def _thinking(value: Any, max_tokens: int) -> Reasoning | None:
    """``enabled`` → a budget; ``adaptive`` → Reasoning() (the model's own default depth);
    ``disabled`` → None (the canonical Request has no explicit "off")."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("thinking: must be an object", param="thinking")
    display = value.get("display")
    if display not in _THINKING_DISPLAY_INCLUDES:
        raise invalid("thinking.display: must be 'summarized' or 'omitted'", param="thinking")
    include = _THINKING_DISPLAY_INCLUDES[display]
    kind = value.get("type")
    if kind == "disabled":
        return None
    if kind == "adaptive":
        return Reasoning(include_thoughts=include)
    if kind != "enabled":
        raise invalid("thinking.type: must be 'enabled', 'adaptive' or 'disabled'", param="thinking")
    budget = value.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise invalid("thinking.budget_tokens: Field required (an integer)", param="thinking.budget_tokens")
    if budget < MIN_THINKING_BUDGET:
        raise invalid(
            f"thinking.budget_tokens: must be ≥ {MIN_THINKING_BUDGET}", param="thinking.budget_tokens"
        )
    if budget >= max_tokens:
        raise invalid("max_tokens: must be greater than thinking.budget_tokens", param="max_tokens")
    return Reasoning(budget_tokens=int(budget), include_thoughts=include)


def _output_config(body: dict[str, Any], request: Request) -> None:
    """``output_config.format`` (and the older top-level ``output_format``) → structured output;
    ``output_config.effort`` → ``extras["output_config.effort"]`` (Anthropic-only)."""
    legacy = body.get("output_format")
    if legacy is not None:
        request.output_format = _json_schema_format(legacy, "output_format")
    config = body.get("output_config")
    if config is None:
        return
    if not isinstance(config, dict):
        raise invalid("output_config: must be an object", param="output_config")
    for key in config:
        if key not in ("effort", "format"):
            raise invalid(
                f"output_config.{key}: Extra inputs are not permitted", param=f"output_config.{key}"
            )
    if config.get("format") is not None:
        request.output_format = _json_schema_format(config["format"], "output_config.format")
    if config.get("effort") is not None:
        request.extras["output_config.effort"] = config["effort"]


def _json_schema_format(value: Any, param: str) -> OutputFormat:
    if (
        not isinstance(value, dict)
        or value.get("type") != "json_schema"
        or not isinstance(value.get("schema"), dict)
    ):
        raise invalid(f"{param}: must be {{type: 'json_schema', schema: {{...}}}}", param=param)
    return OutputFormat(type="json_schema", schema=value["schema"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["MIN_THINKING_BUDGET", "decode_request"]
