"""Client side: a Chat Completions request body as a canonical :class:`Request`.

Decisions (the codec is used only when the provider speaks another format; chat to a chat
provider is passed through untouched):

* ``system`` and ``developer`` messages are hoisted, wherever they appear, into
  ``Request.system`` in order (every other format keeps instructions apart from the turns).
* Consecutive ``tool`` messages become one ``user`` Message of ToolResultParts, in order; each
  result is given the function name of the call it answers (Gemini needs it).
* Images: ``data:`` URLs become inline base64 ``ImagePart(data, media_type)``; other URLs are
  kept as URLs (the gateway never fetches them). ``input_audio`` and ``file`` parts, custom
  tools, the deprecated ``functions`` API and stored assistant audio are refused with a 400
  naming them: no other format can take them.
* ``tool_choice: {"type": "allowed_tools"}`` restricts ``tools`` to the allowed ones (the same
  behaviour without OpenAI's prompt-cache benefit).
* ``reasoning_effort``: ``none`` asks for no reasoning (``Request.reasoning`` stays None);
  ``xhigh``/``max`` become effort ``high`` with a larger thinking budget (see maps).
* ``safety_identifier`` (else ``user``) becomes ``Request.user``.
* Assistant ``reasoning_content`` in the history is not read back: chat has no defined input
  field for reasoning, and providers that take thinking back need signatures chat never has.
* Per-message ``name`` is dropped (only OpenAI reads it) and so is
  ``response_format.json_schema.description`` (the canonical OutputFormat has no field for it).
* Extras (``n``, ``logprobs``, ``seed``, penalties, ``service_tier``…) and any parameter this
  module does not know go to ``Request.extras`` for the provider to honour or refuse, unless
  they only ask for the default. Storage and cache hints (``store``, ``metadata``,
  ``prompt_cache_key``, ``stream_options``…) are skipped: they change nothing a provider does.
"""

from __future__ import annotations

from typing import Any

from ...api.errors import GatewayError, invalid
from ...canonical import (
    ImagePart,
    Message,
    OutputFormat,
    Part,
    Reasoning,
    Request,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from .maps import (
    ABOVE_HIGH_BUDGET_TOKENS,
    CANONICAL_EFFORTS,
    CANONICAL_PARAMS,
    DEFAULT_EXTRA_VALUES,
    HARMLESS_PARAMS,
    IMAGE_DETAILS,
    SYSTEM_ROLES,
    TOOL_CHOICE_MODES,
)

# Parameters refused outright, with the reason a client can act on.
REFUSED_PARAMS: dict[str, str] = {
    "functions": "the deprecated 'functions' API is not supported for this model; use 'tools'",
    "function_call": "the deprecated 'function_call' is not supported for this model; use 'tool_choice'",
}


def unsupported(message: str, param: str) -> GatewayError:
    return invalid(message, param=param, code="unsupported_parameter")


def decode_request(body: dict[str, Any]) -> Request:
    """Read a chat request body (already JSON-parsed) into a canonical Request.

    Raises a 400 :class:`GatewayError` naming the parameter for invalid or unsupported input.
    """
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    for name, reason in REFUSED_PARAMS.items():
        if body.get(name) is not None:
            raise unsupported(f"'{name}': {reason}.", name)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required.", param="model")

    system, messages = _messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    tool_choice, tools = _tool_choice(body.get("tool_choice"), tools)
    request = Request(
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=_optional(body, "parallel_tool_calls", bool, "a boolean"),
        max_output_tokens=_max_tokens(body),
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        top_k=_optional(body, "top_k", int, "an integer"),
        stop=_stop(body.get("stop")),
        output_format=_output_format(body.get("response_format")),
        reasoning=_reasoning(body.get("reasoning_effort")),
        stream=bool(_optional(body, "stream", bool, "a boolean")),
        user=_user(body),
    )
    for name, value in body.items():
        if name in CANONICAL_PARAMS or name in HARMLESS_PARAMS or value is None:
            continue
        if value in DEFAULT_EXTRA_VALUES.get(name, ()):
            continue
        request.extras[name] = value
    return request


# --- scalars ---------------------------------------------------------------------------------


def _optional(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int subclass: `true` is not a valid integer here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid(f"'{name}' must be {what}.", param=name)
    return value


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"'{name}' must be a number.", param=name)
    return float(value)


def _max_tokens(body: dict[str, Any]) -> int | None:
    # max_completion_tokens replaced max_tokens; when both are sent the newer one wins.
    for name in ("max_completion_tokens", "max_tokens"):
        value = _optional(body, name, int, "an integer")
        if value is not None:
            if value < 1:
                raise invalid(f"'{name}' must be at least 1.", param=name)
            return int(value)
    return None


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    raise invalid("'stop' must be a string or an array of strings.", param="stop")


def _user(body: dict[str, Any]) -> str | None:
    for name in ("safety_identifier", "user"):
        value = _optional(body, name, str, "a string")
        if value:
            return str(value)
    return None


def _reasoning(value: Any) -> Reasoning | None:
    if value is None or value == "none":
        return None
    if value in CANONICAL_EFFORTS:
        return Reasoning(effort=value)
    if value in ABOVE_HIGH_BUDGET_TOKENS:
        return Reasoning(effort="high", budget_tokens=ABOVE_HIGH_BUDGET_TOKENS[value])
    raise invalid(
        "'reasoning_effort' must be one of none, minimal, low, medium, high, xhigh, max.",
        param="reasoning_effort",
    )


def _output_format(value: Any) -> OutputFormat | None:
    if value is None:
        return None
    param = "response_format"
    if not isinstance(value, dict):
        raise invalid(f"'{param}' must be an object.", param=param)
    kind = value.get("type")
    if kind in ("text", "json_object"):
        return OutputFormat(type=kind)
    if kind != "json_schema":
        raise invalid(f"{param}.type must be one of text, json_object, json_schema.", param=f"{param}.type")
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise invalid(f"{param}.json_schema must be an object.", param=f"{param}.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(f"{param}.json_schema.name is required.", param=f"{param}.json_schema.name")
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise invalid(f"{param}.json_schema.schema must be an object.", param=f"{param}.json_schema.schema")
    strict = spec.get("strict")
    return OutputFormat(
        type="json_schema",
        name=name,
        schema=schema,
        strict=strict if isinstance(strict, bool) else None,
    )


# --- tools -----------------------------------------------------------------------------------


def _tools(value: Any) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid("'tools' must be an array.", param="tools")
    tools = []
    for i, entry in enumerate(value):
        param = f"tools[{i}]"
        if not isinstance(entry, dict):
            raise invalid(f"{param} must be an object.", param=param)
        kind = entry.get("type")
        if kind != "function":
            raise unsupported(
                f"{param}: tools of type {kind!r} are not supported for this model; use function tools.",
                f"{param}.type",
            )
        function = entry.get("function")
        if not isinstance(function, dict):
            raise invalid(f"{param}.function must be an object.", param=f"{param}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{param}.function.name is required.", param=f"{param}.function.name")
        description = function.get("description")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid(
                f"{param}.function.parameters must be a JSON Schema object.",
                param=f"{param}.function.parameters",
            )
        strict = function.get("strict")
        tools.append(
            Tool(
                name=name,
                description=description if isinstance(description, str) else None,
                parameters=parameters or {},
                strict=strict if isinstance(strict, bool) else None,
            )
        )
    return tools


def _tool_choice(value: Any, tools: list[Tool]) -> tuple[ToolChoice | None, list[Tool]]:
    """The canonical tool choice, and the tools it leaves callable."""
    if value is None:
        return None, tools
    param = "tool_choice"
    if isinstance(value, str):
        if value not in TOOL_CHOICE_MODES:
            raise invalid(f"'{param}' must be none, auto, required or an object.", param=param)
        return ToolChoice(mode=value), tools  # type: ignore[arg-type]
    if not isinstance(value, dict):
        raise invalid(f"'{param}' must be a string or an object.", param=param)
    kind = value.get("type")
    if kind == "function":
        name = (value.get("function") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{param}.function.name is required.", param=f"{param}.function.name")
        return ToolChoice(mode="tool", name=name), tools
    if kind == "allowed_tools":
        return _allowed_tools(value.get("allowed_tools"), tools)
    raise unsupported(f"{param}: type {kind!r} is not supported for this model.", f"{param}.type")


def _allowed_tools(spec: Any, tools: list[Tool]) -> tuple[ToolChoice, list[Tool]]:
    param = "tool_choice.allowed_tools"
    if not isinstance(spec, dict) or spec.get("mode") not in ("auto", "required"):
        raise invalid(f"{param} must be an object with mode auto or required.", param=param)
    names = []
    for entry in spec.get("tools") or []:
        name = ((entry or {}).get("function") or {}).get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise unsupported(f"{param}.tools: only function tools are supported.", f"{param}.tools")
        names.append(name)
    by_name = {tool.name: tool for tool in tools}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise invalid(f"{param}.tools names undefined tools: {', '.join(missing)}.", param=f"{param}.tools")
    return ToolChoice(mode=spec["mode"]), [by_name[name] for name in dict.fromkeys(names)]


# --- messages --------------------------------------------------------------------------------


def _messages(value: Any) -> tuple[list[TextPart], list[Message]]:
    if not isinstance(value, list) or not value:
        raise invalid("'messages' must be a non-empty array.", param="messages")
    system: list[TextPart] = []
    messages: list[Message] = []
    call_names: dict[str, str] = {}  # tool call id -> function name, for the results
    results: list[Part] | None = None  # the user Message collecting consecutive tool results
    for i, message in enumerate(value):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(f"{param} must be an object.", param=param)
        role = message.get("role")
        if role == "tool":
            if results is None:
                results = []
                messages.append(Message(role="user", parts=results))
            results.append(_tool_result(message, param, call_names))
            continue
        results = None
        if role in SYSTEM_ROLES:
            system.extend(p for p in _text_parts(message.get("content"), f"{param}.content") if p.text)
        elif role == "user":
            messages.append(Message(role="user", parts=_user_parts(message.get("content"), param)))
        elif role == "assistant":
            messages.append(_assistant(message, param, call_names))
        elif role == "function":
            raise unsupported(
                f"{param}: 'function' messages (deprecated functions API) are not supported; "
                "use 'tool' messages.",
                f"{param}.role",
            )
        else:
            raise invalid(
                f"{param}.role must be one of system, developer, user, assistant, tool.",
                param=f"{param}.role",
            )
    return system, messages


def _text_parts(content: Any, param: str) -> list[TextPart]:
    """Content that may only hold text: a string or an array of text parts."""
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise invalid(f"{param} must be a string or an array of text parts.", param=param)
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise invalid(f"{param}[{j}] must be a text part.", param=f"{param}[{j}]")
        parts.append(TextPart(part["text"]))
    return parts


def _user_parts(content: Any, param: str) -> list[Part]:
    param = f"{param}.content"
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise invalid(f"{param} must be a string or an array of content parts.", param=param)
    parts: list[Part] = []
    for j, part in enumerate(content):
        part_param = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise invalid(f"{part_param} must be an object.", param=part_param)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"{part_param}.text must be a string.", param=f"{part_param}.text")
            parts.append(TextPart(text))
        elif kind == "image_url":
            parts.append(_image(part.get("image_url"), f"{part_param}.image_url"))
        elif kind in ("input_audio", "file"):
            raise unsupported(
                f"{part_param}: '{kind}' content parts are not supported for this model.",
                f"{part_param}.type",
            )
        else:
            raise invalid(f"{part_param}: unknown content part type {kind!r}.", param=f"{part_param}.type")
    return parts


def _image(spec: Any, param: str) -> ImagePart:
    if isinstance(spec, str):  # some clients send the URL directly
        spec = {"url": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str) or not spec["url"]:
        raise invalid(f"{param}.url must be a URL string.", param=f"{param}.url")
    url: str = spec["url"]
    detail = spec.get("detail")
    if detail is not None and detail not in IMAGE_DETAILS:
        raise invalid(f"{param}.detail must be one of auto, low, high, original.", param=f"{param}.detail")
    if not url.startswith("data:"):
        return ImagePart(url=url, detail=detail)
    media_type, data = parse_data_url(url, f"{param}.url")
    return ImagePart(data=data, media_type=media_type, detail=detail)


def parse_data_url(url: str, param: str) -> tuple[str, str]:
    """``data:<media type>[;param…];base64,<data>`` as (media type, base64 data); 400 otherwise."""
    header, comma, data = url.partition(",")
    attributes = header[len("data:") :].split(";")
    media_type = attributes[0].strip().lower()
    if not comma or attributes[-1] != "base64" or "/" not in media_type or not data:
        raise invalid(f"{param} must be a base64 data URL (data:<media type>;base64,<data>).", param=param)
    return media_type, data


def _assistant(message: dict[str, Any], param: str, call_names: dict[str, str]) -> Message:
    if message.get("function_call") is not None:
        raise unsupported(
            f"{param}.function_call (deprecated functions API) is not supported; use 'tool_calls'.",
            f"{param}.function_call",
        )
    if message.get("audio") is not None:
        raise unsupported(
            f"{param}.audio refers to audio stored at OpenAI and is not supported for this model.",
            f"{param}.audio",
        )
    parts: list[Part] = []
    content = message.get("content")
    if isinstance(content, str):
        parts.append(TextPart(content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            part_param = f"{param}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            field = "refusal" if kind == "refusal" else "text"
            if kind not in ("text", "refusal") or not isinstance(part.get(field), str):
                raise invalid(f"{part_param} must be a text or refusal part.", param=part_param)
            parts.append(TextPart(part[field]))
    elif content is not None:
        raise invalid(f"{param}.content must be a string, an array or null.", param=f"{param}.content")
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal and not parts:
        parts.append(TextPart(refusal))
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise invalid(f"{param}.tool_calls must be an array.", param=f"{param}.tool_calls")
    if calls:
        # An empty content string next to tool calls is how SDKs say "no text".
        parts = [p for p in parts if not isinstance(p, TextPart) or p.text]
    for k, call in enumerate(calls):
        part = _tool_call(call, f"{param}.tool_calls[{k}]")
        call_names[part.id] = part.name
        parts.append(part)
    return Message(role="assistant", parts=parts)


def _tool_call(call: Any, param: str) -> ToolCallPart:
    if not isinstance(call, dict):
        raise invalid(f"{param} must be an object.", param=param)
    if call.get("type", "function") != "function":
        raise unsupported(f"{param}: only function tool calls are supported.", f"{param}.type")
    call_id = call.get("id")
    function = call.get("function")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{param}.id is required.", param=f"{param}.id")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid(f"{param}.function.name is required.", param=f"{param}.function.name")
    arguments = function.get("arguments", "")
    if not isinstance(arguments, str):
        raise invalid(
            f"{param}.function.arguments must be a JSON string.", param=f"{param}.function.arguments"
        )
    return ToolCallPart(id=call_id, name=function["name"], arguments=arguments)


def _tool_result(message: dict[str, Any], param: str, call_names: dict[str, str]) -> ToolResultPart:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{param}.tool_call_id is required.", param=f"{param}.tool_call_id")
    content = message.get("content")
    parts = [] if content is None else _text_parts(content, f"{param}.content")
    return ToolResultPart(
        call_id=call_id,
        content=list(parts),
        name=call_names.get(call_id),
    )
