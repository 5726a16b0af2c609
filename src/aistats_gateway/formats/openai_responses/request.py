"""OpenAI Responses request body ⇄ canonical :class:`~aistats_gateway.canonical.Request`.

Client side (:func:`decode_request`), a body sent to ``POST /v1/responses``:

* ``instructions`` and every ``system``/``developer`` message are hoisted, in order, into
  ``Request.system`` (canonical has one system prompt; formats that allow system text only up
  front need it there).
* ``function_call`` items join the assistant turn before them; ``function_call_output`` items
  become tool-result parts of a ``user`` message. ``data:`` image URLs are decoded to inline
  base64; other image URLs are kept as URLs (the gateway never fetches them).
* ``reasoning`` input items are dropped: they carry an OpenAI summary or encrypted blob that no
  other provider can use (an Anthropic thinking block needs Anthropic's own signature).
* ``reasoning.effort``: ``xhigh``/``max`` become ``high`` (canonical's top level); ``none`` asks
  for no reasoning, so no ``Request.reasoning``. ``reasoning.summary`` (or the deprecated
  ``generate_summary``) sets ``include_thoughts``; a summary without an effort asks for
  reasoning at the default level.
* ``allowed_tools`` choices keep only the allowed tools, with the choice's mode.
  ``tool_choice``/``parallel_tool_calls`` without any tool are dropped (they mean nothing).
* Into ``Request.extras`` (honoured only by providers that can, refused by the others):
  ``include: ["message.output_text.logprobs"]`` → ``logprobs: True``, ``top_logprobs`` (> 0),
  ``service_tier`` (other than ``auto``/``default``), ``text.verbosity`` (other than ``medium``,
  the default) → ``verbosity``.
* Skipped as harmless (no effect on what the model generates): ``store``, ``metadata``,
  ``stream_options``, ``prompt_cache_key``, ``prompt_cache_retention``, ``safety_identifier``,
  ``truncation: "disabled"``, ``service_tier: "auto"|"default"``, the ``include`` values in
  :data:`HARMLESS_INCLUDES`, ``max_tool_calls`` (it only counts built-in tools, which are
  refused), ``text.format.description`` (canonical OutputFormat has no place for it).
* Refused with a 400 naming the parameter: state the gateway does not keep
  (``previous_response_id``, ``conversation``, ``item_reference`` items, stored ``prompt``),
  ``background``, hosted tools and hosted tool choices, files, ``input_audio``,
  ``truncation: "auto"``, any other input item, content part or ``text.format`` type.

Provider side (:func:`encode_request`), for an OpenAI or xAI Responses endpoint: ``instructions``
from the system prompt (parts joined by a blank line), input items (``input_text`` /
``input_image`` messages, ``function_call`` and ``function_call_output`` items; thinking history
dropped), flat function tools (``strict`` always sent: Responses makes functions strict by
default, canonical ``None`` means not strict), ``tool_choice``, ``text.format``,
``reasoning.effort`` (+ ``summary: "auto"`` when thoughts are wanted), ``max_output_tokens``,
``temperature``, ``top_p``, ``user``, ``stream`` and always ``store: false``. ``Request.extras``
in :data:`EXTRAS` are honoured; any other extra, ``top_k`` and ``stop`` are refused with a 400
naming the parameter and the provider. A tool error (``is_error``) has no Responses flag: its
output is prefixed with ``"Error: "``.
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
    OutputFormat,
    Part,
    Reasoning,
    ReasoningEffort,
    Request,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from ..base import Target

FORMAT = "responses"

# `include` values that change nothing the gateway returns: encrypted reasoning is never
# returned through another format, input images are never echoed, and the hosted-tool ones
# refer to tools that are refused.
HARMLESS_INCLUDES = frozenset(
    {
        "reasoning.encrypted_content",
        "message.input_image.image_url",
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "code_interpreter_call.outputs",
        "computer_call_output.output.image_url",
    }
)
LOGPROBS_INCLUDE = "message.output_text.logprobs"

# Message roles: a system-level role is hoisted into Request.system.
SYSTEM_ROLES = frozenset({"system", "developer"})
CONVERSATION_ROLES = frozenset({"user", "assistant"})
TEXT_PART_TYPES = frozenset({"input_text", "output_text"})
IMAGE_DETAILS = frozenset({"auto", "low", "high", "original"})

# reasoning.effort -> canonical effort (None: no reasoning asked for).
EFFORTS: dict[str, ReasoningEffort | None] = {
    "none": None,
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
SUMMARY_VALUES = frozenset({"auto", "concise", "detailed"})

TOOL_CHOICE_MODES = frozenset({"auto", "none", "required"})
DEFAULT_SERVICE_TIERS = frozenset({"auto", "default"})
DEFAULT_VERBOSITY = "medium"

DEFAULT_SCHEMA_NAME = "response"  # Responses requires a json_schema name; canonical may have none


def unsupported(message: str, param: str) -> GatewayError:
    """A 400 for a Responses feature the gateway cannot serve."""
    return invalid(message, param=param, code="unsupported_parameter")


# =============================================================================================
# Client side: Responses body -> canonical Request
# =============================================================================================


def decode_request(body: dict[str, Any]) -> Request:
    """The canonical request for a Responses ``body`` (already JSON-parsed).

    Raises :class:`GatewayError` (400, ``param`` set) for invalid or unsupported input.
    """
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    _refuse_stateful(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required.", param="model")

    system: list[TextPart] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid("'instructions' must be a string.", param="instructions")
        if instructions:
            system.append(TextPart(instructions))
    messages = _input_messages(body.get("input"), system)
    if not messages:
        raise invalid("'input' must contain at least one message.", param="input")

    request = Request(model=model, messages=messages, system=system)
    _read_sampling(body, request)
    _read_tools(body, request)
    request.output_format = _read_text_format(body.get("text"), request.extras)
    request.reasoning = _read_reasoning(body.get("reasoning"))
    _read_extras(body, request.extras)

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("'stream' must be a boolean.", param="stream")
    request.stream = bool(stream)
    return request


def _refuse_stateful(body: dict[str, Any]) -> None:
    for name in ("previous_response_id", "conversation"):
        if body.get(name) is not None:
            raise unsupported(
                f"'{name}' is not supported for this model: the gateway does not store responses; "
                "send the whole conversation in 'input'.",
                name,
            )
    if body.get("background"):
        raise unsupported("'background' responses are not supported for this model.", "background")
    if body.get("prompt") is not None:
        raise unsupported("Stored prompts ('prompt') are not supported for this model.", "prompt")
    truncation = body.get("truncation")
    if truncation not in (None, "disabled"):
        raise unsupported(
            f"truncation {truncation!r} is not supported for this model; use 'disabled'.", "truncation"
        )


def _read_extras(body: dict[str, Any], extras: dict[str, Any]) -> None:
    include = body.get("include")
    if include is not None:
        if not isinstance(include, list):
            raise invalid("'include' must be an array.", param="include")
        for entry in include:
            if entry == LOGPROBS_INCLUDE:
                extras["logprobs"] = True
            elif entry not in HARMLESS_INCLUDES:
                raise unsupported(f"include {entry!r} is not supported for this model.", "include")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None:
        if not isinstance(top_logprobs, int) or isinstance(top_logprobs, bool) or top_logprobs < 0:
            raise invalid("'top_logprobs' must be a non-negative integer.", param="top_logprobs")
        if top_logprobs:
            extras["top_logprobs"] = top_logprobs
    tier = body.get("service_tier")
    if tier is not None:
        if not isinstance(tier, str):
            raise invalid("'service_tier' must be a string.", param="service_tier")
        if tier not in DEFAULT_SERVICE_TIERS:
            extras["service_tier"] = tier


# --- input items -------------------------------------------------------------------------------


def _input_messages(value: Any, system: list[TextPart]) -> list[Message]:
    if value is None:
        raise invalid("'input' is required.", param="input")
    if isinstance(value, str):
        return [Message("user", [TextPart(value)])]
    if not isinstance(value, list):
        raise invalid("'input' must be a string or an array of input items.", param="input")
    messages: list[Message] = []
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"{param} must be an object.", param=param)
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if kind == "message":
            _message(item, param, messages, system)
        elif kind == "function_call":
            _append_part(messages, "assistant", _tool_call(item, param))
        elif kind == "function_call_output":
            result = _tool_result(item, param)
            last = messages[-1] if messages else None
            # Consecutive results answer one assistant turn: keep them in one user message.
            if last is not None and last.role == "user" and isinstance(last.parts[-1], ToolResultPart):
                last.parts.append(result)
            else:
                messages.append(Message("user", [result]))
        elif kind == "reasoning":
            continue  # see the module docstring
        elif kind == "item_reference":
            raise unsupported(
                f"{param}: 'item_reference' items are not supported; the gateway does not store items.",
                param,
            )
        else:
            raise unsupported(f"{param}: input items of type {kind!r} are not supported.", f"{param}.type")
    return messages


def _append_part(messages: list[Message], role: str, part: Part) -> None:
    """Add ``part`` to the last message if it has ``role``, else start a new message."""
    if messages and messages[-1].role == role:
        messages[-1].parts.append(part)
    else:
        messages.append(Message(role, [part]))  # type: ignore[arg-type]


def _message(item: dict[str, Any], param: str, messages: list[Message], system: list[TextPart]) -> None:
    role = item.get("role")
    if role not in SYSTEM_ROLES and role not in CONVERSATION_ROLES:
        raise invalid(
            f"{param}.role must be one of user, system, developer, assistant.", param=f"{param}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        parts: list[TextPart | ImagePart] = [TextPart(content)]
    elif isinstance(content, list):
        parts = [_content_part(part, role, f"{param}.content[{j}]") for j, part in enumerate(content)]
    else:
        raise invalid(f"{param}.content must be a string or an array.", param=f"{param}.content")
    if role in SYSTEM_ROLES:
        for part in parts:
            if not isinstance(part, TextPart):
                raise unsupported(f"{param}: system messages may only contain text.", f"{param}.content")
            system.append(part)
        return
    if role == "assistant" and messages and messages[-1].role == "assistant":
        messages[-1].parts.extend(parts)  # one assistant turn may come as several items
        return
    messages.append(Message(role, list(parts)))


def _content_part(part: Any, role: str, param: str) -> TextPart | ImagePart:
    if not isinstance(part, dict):
        raise invalid(f"{param} must be an object.", param=param)
    kind = part.get("type")
    if kind in TEXT_PART_TYPES:
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid(f"{param}.text must be a string.", param=f"{param}.text")
        return TextPart(text)
    if kind == "refusal" and role == "assistant":
        return TextPart(str(part.get("refusal") or ""))
    if kind == "input_image":
        if role != "user":
            raise unsupported(f"{param}: input_image parts are only supported in user messages.", param)
        return _image_part(part, param)
    if kind == "input_file":
        raise unsupported(f"{param}: 'input_file' parts are not supported for this model.", param)
    raise unsupported(f"{param}: content parts of type {kind!r} are not supported.", f"{param}.type")


def _image_part(part: dict[str, Any], param: str) -> ImagePart:
    if part.get("file_id") is not None:
        raise unsupported(
            f"{param}: images by 'file_id' are not supported for this model; send 'image_url' "
            "(an https or data: URL).",
            f"{param}.file_id",
        )
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise invalid(f"{param}.image_url must be a URL string.", param=f"{param}.image_url")
    detail = part.get("detail")
    detail = detail if detail in IMAGE_DETAILS else None
    if url.startswith("data:"):
        media_type, data = parse_data_url(url, f"{param}.image_url")
        return ImagePart(data=data, media_type=media_type, detail=detail)
    return ImagePart(url=url, detail=detail)


def parse_data_url(url: str, param: str) -> tuple[str, str]:
    """``(media_type, base64 data)`` of a ``data:<type>;base64,<data>`` URL, else a 400."""
    header, sep, data = url[len("data:") :].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type or not data:
        raise invalid(f"{param} must be a base64 data: URL (data:<type>;base64,<data>).", param=param)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"{param} is not valid base64.", param=param) from exc
    return media_type, data


def _tool_call(item: dict[str, Any], param: str) -> ToolCallPart:
    call_id = item.get("call_id")
    name = item.get("name")
    arguments = item.get("arguments", "")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{param}.call_id is required.", param=f"{param}.call_id")
    if not isinstance(name, str) or not name:
        raise invalid(f"{param}.name is required.", param=f"{param}.name")
    if not isinstance(arguments, str):
        raise invalid(f"{param}.arguments must be a string.", param=f"{param}.arguments")
    return ToolCallPart(id=call_id, name=name, arguments=arguments)


def _tool_result(item: dict[str, Any], param: str) -> ToolResultPart:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{param}.call_id is required.", param=f"{param}.call_id")
    output = item.get("output")
    if isinstance(output, str):
        return ToolResultPart(call_id=call_id, content=[TextPart(output)])
    if not isinstance(output, list):
        raise invalid(f"{param}.output must be a string or an array of parts.", param=f"{param}.output")
    content: list[TextPart | ImagePart] = []
    for j, part in enumerate(output):
        part_param = f"{param}.output[{j}]"
        if isinstance(part, dict) and part.get("type") == "input_image":
            content.append(_image_part(part, part_param))
        elif isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES:
            content.append(TextPart(str(part.get("text") or "")))
        else:
            raise unsupported(
                f"{part_param}: only text and image parts are supported in tool outputs.", part_param
            )
    return ToolResultPart(call_id=call_id, content=content)


# --- settings ----------------------------------------------------------------------------------


def _read_sampling(body: dict[str, Any], request: Request) -> None:
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise invalid("'max_output_tokens' must be a positive integer.", param="max_output_tokens")
        request.max_output_tokens = max_tokens
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise invalid(f"'{name}' must be a number.", param=name)
        setattr(request, name, float(value))
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise invalid("'user' must be a string.", param="user")
        request.user = user


def _read_tools(body: dict[str, Any], request: Request) -> None:
    tools = body.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise invalid("'tools' must be an array.", param="tools")
    canonical = [_function_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("'parallel_tool_calls' must be a boolean.", param="parallel_tool_calls")

    value = body.get("tool_choice")
    choice: ToolChoice | None = None
    if value is None:
        pass
    elif isinstance(value, str) and value in TOOL_CHOICE_MODES:
        choice = ToolChoice(value)  # type: ignore[arg-type]
    elif isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name")
        if not any(tool.name == name for tool in canonical):
            raise invalid(
                f"tool_choice names function {name!r}, which is not in 'tools'.", param="tool_choice"
            )
        choice = ToolChoice("tool", name=name)
    elif isinstance(value, dict) and value.get("type") == "allowed_tools":
        canonical, choice = _allowed_tools(value, canonical)
    else:
        kind = value.get("type") if isinstance(value, dict) else value
        raise unsupported(f"tool_choice {kind!r} is not supported for this model.", "tool_choice")

    if not canonical:
        if choice is not None and choice.mode not in ("auto", "none"):
            raise invalid("'tool_choice' requires at least one function in 'tools'.", param="tool_choice")
        return  # see the module docstring
    request.tools = canonical
    request.tool_choice = choice
    request.parallel_tool_calls = parallel


def _function_tool(tool: Any, param: str) -> Tool:
    if not isinstance(tool, dict):
        raise invalid(f"{param} must be an object.", param=param)
    kind = tool.get("type")
    if kind != "function":
        raise unsupported(
            f"{param}: tools of type {kind!r} are not supported for this model; only 'function' tools are.",
            f"{param}.type",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(f"{param}.name is required.", param=f"{param}.name")
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise invalid(f"{param}.parameters must be a JSON schema object.", param=f"{param}.parameters")
    description = tool.get("description")
    strict = tool.get("strict")
    return Tool(
        name=name,
        description=description if isinstance(description, str) else None,
        parameters=parameters or {},
        strict=strict if isinstance(strict, bool) else None,
    )


def _allowed_tools(choice: dict[str, Any], tools: list[Tool]) -> tuple[list[Tool], ToolChoice]:
    """``allowed_tools`` has no canonical equivalent: keep only the allowed tools."""
    mode = choice.get("mode", "auto")
    allowed = choice.get("tools")
    if mode not in ("auto", "required") or not isinstance(allowed, list):
        raise invalid(
            "tool_choice allowed_tools needs 'mode' (auto|required) and 'tools'.", param="tool_choice"
        )
    names = set()
    for entry in allowed:
        if not isinstance(entry, dict) or entry.get("type") != "function":
            raise unsupported("tool_choice allowed_tools may only list function tools.", "tool_choice")
        names.add(entry.get("name"))
    return [tool for tool in tools if tool.name in names], ToolChoice(mode)


def _read_text_format(text: Any, extras: dict[str, Any]) -> OutputFormat | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise invalid("'text' must be an object.", param="text")
    verbosity = text.get("verbosity")
    if verbosity is not None and verbosity != DEFAULT_VERBOSITY:
        extras["verbosity"] = verbosity
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise invalid("'text.format' must be an object.", param="text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat("json_object")
    if kind != "json_schema":
        raise unsupported(f"text.format type {kind!r} is not supported.", "text.format.type")
    name = fmt.get("name")
    schema = fmt.get("schema")
    if not isinstance(name, str) or not name:
        raise invalid("'text.format.name' is required for json_schema.", param="text.format.name")
    if not isinstance(schema, dict):
        raise invalid("'text.format.schema' must be a JSON schema object.", param="text.format.schema")
    strict = fmt.get("strict")
    return OutputFormat(
        "json_schema", name=name, schema=schema, strict=strict if isinstance(strict, bool) else None
    )


def _read_reasoning(value: Any) -> Reasoning | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("'reasoning' must be an object.", param="reasoning")
    summary = value.get("summary", value.get("generate_summary"))
    if summary is not None and summary not in SUMMARY_VALUES:
        raise invalid(
            "'reasoning.summary' must be one of auto, concise, detailed.", param="reasoning.summary"
        )
    effort = value.get("effort")
    if effort is None:
        if summary is None:
            return None  # nothing asked for: the model's default
        return Reasoning(include_thoughts=True)
    if effort not in EFFORTS:
        raise invalid(f"reasoning.effort {effort!r} is not a known effort.", param="reasoning.effort")
    level = EFFORTS[effort]
    if level is None:
        return None
    return Reasoning(effort=level, include_thoughts=summary is not None)


# =============================================================================================
# Provider side: canonical Request -> Responses body
# =============================================================================================


def _refusal(param: str, target: Target) -> GatewayError:
    return invalid(f"'{param}' is not supported by provider '{target.provider}' ({FORMAT})", param=param)


def _set_logprobs(body: dict[str, Any], value: Any) -> None:
    if value:
        body.setdefault("include", []).append(LOGPROBS_INCLUDE)


def _set_verbosity(body: dict[str, Any], value: Any) -> None:
    body.setdefault("text", {})["verbosity"] = value


def _set(name: str) -> Callable[[dict[str, Any], Any], None]:
    def setter(body: dict[str, Any], value: Any) -> None:
        body[name] = value

    return setter


# Request.extras a Responses endpoint honours, by key; every other extra is refused.
EXTRAS: dict[str, Callable[[dict[str, Any], Any], None]] = {
    "logprobs": _set_logprobs,
    "top_logprobs": _set("top_logprobs"),
    "service_tier": _set("service_tier"),
    "verbosity": _set_verbosity,
    "max_tool_calls": _set("max_tool_calls"),
    "prompt_cache_key": _set("prompt_cache_key"),
    "safety_identifier": _set("safety_identifier"),
    "metadata": _set("metadata"),
}


def encode_request(request: Request, target: Target) -> dict[str, Any]:
    """The Responses body for ``request`` sent to ``target``; a 400 for what it cannot carry."""
    if request.top_k is not None:
        raise _refusal("top_k", target)
    if request.stop:
        raise _refusal("stop", target)
    for key in request.extras:
        if key not in EXTRAS:
            raise _refusal(key, target)

    body: dict[str, Any] = {"model": target.model}
    if request.system:
        body["instructions"] = "\n\n".join(part.text for part in request.system)
    body["input"] = _input_items(request.messages, target)
    _write_tools(request, body, target)
    if request.output_format is not None:
        body["text"] = {"format": _text_format(request.output_format)}
    if request.reasoning is not None:
        reasoning: dict[str, Any] = {"effort": request.reasoning.level()}
        if request.reasoning.include_thoughts:
            reasoning["summary"] = "auto"
        body["reasoning"] = reasoning
    if request.max_output_tokens is not None:
        body["max_output_tokens"] = request.max_output_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.user is not None:
        body["user"] = request.user
    for key, value in request.extras.items():
        EXTRAS[key](body, value)
    if request.stream:
        body["stream"] = True
    body["store"] = False  # the gateway never relies on stored responses
    return body


def _input_items(messages: list[Message], target: Target) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        content: list[dict[str, Any]] = []  # the current run of message content
        for part in message.parts:
            if isinstance(part, TextPart):
                content.append(_text_content(message.role, part.text))
            elif isinstance(part, ImagePart):
                if message.role != "user":
                    raise _refusal(f"{param}.image", target)
                content.append(_image_content(part))
            elif isinstance(part, ToolCallPart):
                _flush(items, message.role, content)
                items.append(
                    {
                        "type": "function_call",
                        "call_id": part.id,
                        "name": part.name,
                        "arguments": part.arguments,
                    }
                )
            elif isinstance(part, ToolResultPart):
                _flush(items, message.role, content)
                items.append(
                    {"type": "function_call_output", "call_id": part.call_id, "output": _output(part)}
                )
            elif isinstance(part, ThinkingPart):
                continue  # reasoning history is provider-specific; see the module docstring
        _flush(items, message.role, content)
    return items


def _text_content(role: str, text: str) -> dict[str, Any]:
    return {"type": "output_text" if role == "assistant" else "input_text", "text": text}


def _image_content(part: ImagePart) -> dict[str, Any]:
    if part.url is None and not (part.data and part.media_type):
        raise invalid("An image needs a URL, or base64 data with its media type.", param="image")
    url = part.url if part.url is not None else f"data:{part.media_type};base64,{part.data}"
    detail = part.detail if part.detail in IMAGE_DETAILS else "auto"
    return {"type": "input_image", "image_url": url, "detail": detail}


def _flush(items: list[dict[str, Any]], role: str, content: list[dict[str, Any]]) -> None:
    """Emit the pending message content (if any) as one message item."""
    if not content:
        return
    if role == "assistant":
        # An assistant input message needs no id/status when its content is a plain string.
        items.append({"type": "message", "role": "assistant", "content": "".join(c["text"] for c in content)})
    else:
        items.append({"type": "message", "role": role, "content": list(content)})
    content.clear()


def _output(part: ToolResultPart) -> str | list[dict[str, Any]]:
    prefix = "Error: " if part.is_error else ""
    if all(isinstance(piece, TextPart) for piece in part.content):
        return prefix + "\n".join(piece.text for piece in part.content if isinstance(piece, TextPart))
    output: list[dict[str, Any]] = [{"type": "input_text", "text": prefix}] if prefix else []
    for piece in part.content:
        output.append(
            _image_content(piece) if isinstance(piece, ImagePart) else _text_content("user", piece.text)
        )
    return output


def _write_tools(request: Request, body: dict[str, Any], target: Target) -> None:
    choice = request.tool_choice
    if not request.tools:
        if choice is not None and choice.mode not in ("auto", "none"):
            raise _refusal("tool_choice", target)
        return
    body["tools"] = [_tool(tool) for tool in request.tools]
    if choice is not None:
        body["tool_choice"] = (
            {"type": "function", "name": choice.name} if choice.mode == "tool" else choice.mode
        )
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls


def _tool(tool: Tool) -> dict[str, Any]:
    rendered: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description is not None:
        rendered["description"] = tool.description
    rendered["parameters"] = tool.parameters or None
    rendered["strict"] = bool(tool.strict)
    return rendered


def _text_format(fmt: OutputFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    rendered: dict[str, Any] = {
        "type": "json_schema",
        "name": fmt.name or DEFAULT_SCHEMA_NAME,
        "schema": fmt.schema or {},
    }
    if fmt.strict is not None:
        rendered["strict"] = fmt.strict
    return rendered
