"""Translate an OpenAI Responses request into a Chat Completions request.

Used when a client calls ``POST /v1/responses`` and the chosen provider only speaks chat
(vLLM, Ollama, llama.cpp, Google's OpenAI-compatible endpoint, ...). Decisions, for a
provider that only has the chat wire format:

* ``max_output_tokens`` becomes ``max_tokens``: every OpenAI-compatible server accepts it,
  while ``max_completion_tokens`` is newer and missing from many of them. (OpenAI itself
  speaks Responses natively, so its requests are passed through, never translated.)
* ``developer`` messages become ``system`` messages: most chat templates only know system.
* Text-only message content becomes one string (parts joined with a newline, as vLLM does
  itself); content with images or audio stays a list of chat parts.
* ``reasoning`` input items are dropped: they only carry a summary or an encrypted blob that a
  chat provider cannot use.
* Dropped, because chat servers reject or ignore them: ``metadata`` (OpenAI chat only accepts it
  with ``store``), ``text.verbosity``, ``reasoning.summary``, ``store``, ``service_tier``,
  ``stream_options`` (Responses' only option there is obfuscation), ``prompt_cache_key``,
  ``safety_identifier``, ``max_tool_calls`` (only counts hosted tools, which are refused).
  They are still echoed in the Responses object the client gets back.
* Refused with a 400 naming the parameter: state the gateway does not keep
  (``previous_response_id``, ``conversation``, ``item_reference`` items, stored ``prompt``),
  ``background``, hosted tools, files, logprobs, and ``truncation: "auto"``.
"""

from __future__ import annotations

from typing import Any

from aistats_gateway.api.errors import GatewayError, invalid

# `include` values that change nothing for a chat provider: encrypted reasoning is simply not
# returned, input images are never echoed, and the hosted-tool ones refer to tools we refuse.
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
MESSAGE_ROLES = frozenset({"user", "system", "developer", "assistant"})
TEXT_PART_TYPES = frozenset({"input_text", "output_text"})
IMAGE_DETAILS = frozenset({"auto", "low", "high"})


def unsupported(message: str, param: str) -> GatewayError:
    """A 400 for a Responses feature that cannot be served through a chat provider."""
    return invalid(message, param=param, code="unsupported_parameter")


def responses_request_to_chat(body: dict, *, upstream_model: str) -> dict:
    """Build the chat request body for a Responses request ``body`` (already JSON-parsed).

    Raises :class:`GatewayError` (400, ``param`` set) for invalid or unsupported input.
    """
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    _refuse_stateful(body)

    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid("'instructions' must be a string.", param="instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    messages.extend(_input_messages(body.get("input")))
    if not any(m["role"] != "system" for m in messages):
        raise invalid("'input' must contain at least one message.", param="input")

    chat: dict[str, Any] = {"model": upstream_model, "messages": messages}
    _copy_sampling(body, chat)
    _translate_tools(body, chat)
    _translate_text_format(body.get("text"), chat)

    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise invalid("'reasoning' must be an object.", param="reasoning")
        if reasoning.get("effort") is not None:
            chat["reasoning_effort"] = reasoning["effort"]

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("'stream' must be a boolean.", param="stream")
    if stream:
        chat["stream"] = True
        # Always: the gateway bills from the usage chunk.
        chat["stream_options"] = {"include_usage": True}
    return chat


def _refuse_stateful(body: dict) -> None:
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
    include = body.get("include")
    if include is not None:
        if not isinstance(include, list):
            raise invalid("'include' must be an array.", param="include")
        for entry in include:
            if entry not in HARMLESS_INCLUDES:
                raise unsupported(f"include {entry!r} is not supported for this model.", "include")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs:
        raise unsupported("'top_logprobs' is not supported for this model.", "top_logprobs")
    truncation = body.get("truncation")
    if truncation not in (None, "disabled"):
        raise unsupported(
            f"truncation {truncation!r} is not supported for this model; use 'disabled'.", "truncation"
        )


def _input_messages(value: Any) -> list[dict[str, Any]]:
    if value is None:
        raise invalid("'input' is required.", param="input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid("'input' must be a string or an array of input items.", param="input")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"{param} must be an object.", param=param)
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            _append_tool_call(messages, item, param)
        elif kind == "function_call_output":
            messages.append(_tool_result(item, param))
        elif kind == "reasoning":
            continue  # nothing a chat provider can use (see module docstring)
        elif kind == "item_reference":
            raise unsupported(
                f"{param}: 'item_reference' items are not supported; the gateway does not store items.",
                param,
            )
        else:
            raise unsupported(f"{param}: input items of type {kind!r} are not supported.", f"{param}.type")
    return messages


def _message(item: dict, param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise invalid(
            f"{param}.role must be one of user, system, developer, assistant.", param=f"{param}.role"
        )
    chat_role = "system" if role == "developer" else role
    content = item.get("content")
    if isinstance(content, str):
        return {"role": chat_role, "content": content}
    if not isinstance(content, list):
        raise invalid(f"{param}.content must be a string or an array.", param=f"{param}.content")
    parts = [_content_part(part, role, f"{param}.content[{j}]") for j, part in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return {"role": chat_role, "content": "\n".join(p["text"] for p in parts)}
    return {"role": chat_role, "content": parts}


def _content_part(part: Any, role: str, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise invalid(f"{param} must be an object.", param=param)
    kind = part.get("type")
    if kind in TEXT_PART_TYPES:
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid(f"{param}.text must be a string.", param=f"{param}.text")
        return {"type": "text", "text": text}
    if kind == "refusal" and role == "assistant":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind in ("input_image", "input_audio") and role != "user":
        raise unsupported(f"{param}: {kind} parts are only supported in user messages.", param)
    if kind == "input_image":
        return _image_part(part, param)
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise invalid(f"{param}.input_audio must be an object with 'data' and 'format'.", param=param)
        return {"type": "input_audio", "input_audio": {"data": audio["data"], "format": audio.get("format")}}
    if kind == "input_file":
        raise unsupported(f"{param}: 'input_file' parts are not supported for this model.", param)
    raise unsupported(f"{param}: content parts of type {kind!r} are not supported.", f"{param}.type")


def _image_part(part: dict, param: str) -> dict[str, Any]:
    if part.get("file_id") is not None:
        raise unsupported(
            f"{param}: images by 'file_id' are not supported for this model; send 'image_url' "
            "(an https or data: URL).",
            f"{param}.file_id",
        )
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise invalid(f"{param}.image_url must be a URL string.", param=f"{param}.image_url")
    image: dict[str, Any] = {"url": url}
    detail = part.get("detail")
    if detail in IMAGE_DETAILS:
        image["detail"] = detail
    elif detail == "original":
        image["detail"] = "high"  # chat has no "original"; "high" is the closest
    return {"type": "image_url", "image_url": image}


def _append_tool_call(messages: list[dict[str, Any]], item: dict, param: str) -> None:
    call_id = item.get("call_id")
    name = item.get("name")
    arguments = item.get("arguments", "")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{param}.call_id is required.", param=f"{param}.call_id")
    if not isinstance(name, str) or not name:
        raise invalid(f"{param}.name is required.", param=f"{param}.name")
    if not isinstance(arguments, str):
        raise invalid(f"{param}.arguments must be a string.", param=f"{param}.arguments")
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    # A Responses turn is separate items (message, calls); chat wants one assistant message
    # carrying both, and many chat templates reject two assistant messages in a row.
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        if last.get("content") == "":
            last["content"] = None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_result(item: dict, param: str) -> dict[str, Any]:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{param}.call_id is required.", param=f"{param}.call_id")
    output = item.get("output")
    if isinstance(output, list):
        texts = []
        for j, part in enumerate(output):
            part_param = f"{param}.output[{j}]"
            if not isinstance(part, dict) or part.get("type") not in TEXT_PART_TYPES:
                raise unsupported(f"{part_param}: only text parts are supported in tool outputs.", part_param)
            texts.append(str(part.get("text") or ""))
        output = "\n".join(texts)
    if not isinstance(output, str):
        raise invalid(f"{param}.output must be a string or an array of parts.", param=f"{param}.output")
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _copy_sampling(body: dict, chat: dict[str, Any]) -> None:
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise invalid("'max_output_tokens' must be a positive integer.", param="max_output_tokens")
        chat["max_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise invalid(f"'{name}' must be a number.", param=name)
        chat[name] = value
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise invalid("'user' must be a string.", param="user")
        chat["user"] = user


def _translate_tools(body: dict, chat: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise invalid("'tools' must be an array.", param="tools")
    chat_tools = [_function_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    tool_choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("'parallel_tool_calls' must be a boolean.", param="parallel_tool_calls")

    chat_choice: Any = None
    if tool_choice is None or tool_choice in ("auto", "none", "required"):
        chat_choice = tool_choice
    elif isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = tool_choice.get("name")
        if not any(t["function"]["name"] == name for t in chat_tools):
            raise invalid(
                f"tool_choice names function {name!r}, which is not in 'tools'.", param="tool_choice"
            )
        chat_choice = {"type": "function", "function": {"name": name}}
    elif isinstance(tool_choice, dict) and tool_choice.get("type") == "allowed_tools":
        chat_tools, chat_choice = _allowed_tools(tool_choice, chat_tools)
    else:
        kind = tool_choice.get("type") if isinstance(tool_choice, dict) else tool_choice
        raise unsupported(f"tool_choice {kind!r} is not supported for this model.", "tool_choice")

    if not chat_tools:
        if chat_choice not in (None, "auto", "none"):
            raise invalid("'tool_choice' requires at least one function in 'tools'.", param="tool_choice")
        return  # chat servers reject tool_choice / parallel_tool_calls without tools
    chat["tools"] = chat_tools
    if chat_choice is not None:
        chat["tool_choice"] = chat_choice
    if parallel is not None:
        chat["parallel_tool_calls"] = parallel


def _function_tool(tool: Any, param: str) -> dict[str, Any]:
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
    function: dict[str, Any] = {"name": name}
    if tool.get("description") is not None:
        function["description"] = tool["description"]
    if tool.get("parameters") is not None:
        if not isinstance(tool["parameters"], dict):
            raise invalid(f"{param}.parameters must be a JSON schema object.", param=f"{param}.parameters")
        function["parameters"] = tool["parameters"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _allowed_tools(choice: dict, chat_tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """``allowed_tools`` has no chat equivalent on most servers: send only the allowed ones."""
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
    return [t for t in chat_tools if t["function"]["name"] in names], mode


def _translate_text_format(text: Any, chat: dict[str, Any]) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise invalid("'text' must be an object.", param="text")
    fmt = text.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise invalid("'text.format' must be an object.", param="text.format")
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
        return
    if kind != "json_schema":
        raise unsupported(f"text.format type {kind!r} is not supported.", "text.format.type")
    name = fmt.get("name")
    schema = fmt.get("schema")
    if not isinstance(name, str) or not name:
        raise invalid("'text.format.name' is required for json_schema.", param="text.format.name")
    if not isinstance(schema, dict):
        raise invalid("'text.format.schema' must be a JSON schema object.", param="text.format.schema")
    json_schema: dict[str, Any] = {"name": name, "schema": schema}
    if fmt.get("description") is not None:
        json_schema["description"] = fmt["description"]
    if isinstance(fmt.get("strict"), bool):
        json_schema["strict"] = fmt["strict"]
    chat["response_format"] = {"type": "json_schema", "json_schema": json_schema}
