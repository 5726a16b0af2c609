"""The pre-codec Responses ⇄ Chat Completions API, kept for ``pipeline/exchanges.py`` until it
uses codecs (then this module goes away).

* :func:`responses_request_to_chat` — the old request translation, unchanged: a Responses body
  straight to a chat body (developer messages stay in place as system messages, ``input_audio``
  parts and raw ``reasoning.effort`` values pass through, ``max_output_tokens`` becomes
  ``max_tokens``: every OpenAI-compatible server accepts it). It refuses what a chat provider
  cannot serve: stored state, hosted tools, files, logprobs, ``truncation: "auto"``.
* :func:`chat_response_to_responses` — a ``chat.completion`` read into a canonical Response,
  then rendered by :func:`~.objects.encode_response` (usage without ``cost``: the caller adds it).
* :class:`ChatStreamToResponses` — chat chunks read into canonical events by
  :class:`_ChatChunkReader`, rendered by :class:`~.stream.ResponsesStreamEncoder`.

The chat readers here are deliberately small local helpers (the chat codec is written
separately): reasoning from ``reasoning_content`` or ``reasoning`` (vLLM may send both with the
same text: one is taken), tool calls by chat ``index`` (Ollama reuses index 0 for parallel calls,
told apart by a new id; arguments that come before the tool's name are held until it is known).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...api.errors import invalid
from ...canonical import (
    Finish,
    FinishReason,
    Part,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageUpdate,
)
from ...ids import GENERATION_PREFIX
from ..base import ResponseContext
from .objects import RESPONSE_PREFIX, encode_response, new_call_id
from .request import HARMLESS_INCLUDES, TEXT_PART_TYPES, unsupported
from .stream import ResponsesStreamEncoder

__all__ = ["ChatStreamToResponses", "chat_response_to_responses", "responses_request_to_chat"]

MESSAGE_ROLES = frozenset({"user", "system", "developer", "assistant"})
IMAGE_DETAILS = frozenset({"auto", "low", "high"})

# A chat finish_reason -> canonical; anything else (or none) ended normally.
CHAT_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


# =============================================================================================
# Requests (the old translation, unchanged)
# =============================================================================================


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


# =============================================================================================
# Complete responses and streams, through canonical types and this codec
# =============================================================================================


def _context(response_id: str, model: str, created_at: int, request: dict) -> ResponseContext:
    """A context whose generation id derives back to ``response_id`` (``resp_<ULID>``)."""
    suffix = response_id[len(RESPONSE_PREFIX) :] if response_id.startswith(RESPONSE_PREFIX) else response_id
    return ResponseContext(
        generation_id=GENERATION_PREFIX + suffix, model=model, created=created_at, request=request
    )


def reasoning_text(fields: dict) -> str:
    """The reasoning text of a chat message or delta: vLLM (< 0.11) and DeepSeek say
    ``reasoning_content``, vLLM (>= 0.11), Ollama and OpenRouter ``reasoning``. vLLM may send
    both with the same text, so one is taken, never both."""
    for key in ("reasoning_content", "reasoning"):
        value = fields.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def content_text(content: Any) -> str:
    """Chat message content as text (a string, or a list of text parts as some servers send)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def chat_completion_to_canonical(chat: dict) -> Response:
    """The first choice of a ``chat.completion`` as a canonical Response."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    parts: list[Part] = []
    thinking = reasoning_text(message)
    if thinking:
        parts.append(ThinkingPart(thinking))
    content = message.get("content")
    if content is not None:
        parts.append(TextPart(content_text(content)))
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            function = call.get("function") or {}
            parts.append(
                ToolCallPart(
                    id=call.get("id") or new_call_id(),
                    name=function.get("name") or "",
                    arguments=function.get("arguments") or "",
                )
            )
    return Response(
        parts=parts,
        finish_reason=CHAT_FINISH.get(choice.get("finish_reason") or "", "stop"),
        usage=Usage.from_openai_chat(chat.get("usage")),
    )


def chat_response_to_responses(
    chat: dict,
    *,
    response_id: str,
    model: str,
    created_at: int,
    request: dict,
    clock: Callable[[], float] = time.time,
) -> dict:
    """A complete Response object from a complete ``chat.completion`` (first choice).

    ``usage`` has no ``cost`` yet: the caller adds it.
    """
    ctx = _context(response_id, model, created_at, request)
    response = encode_response(chat_completion_to_canonical(chat), ctx, 0.0, clock=clock)
    del response["usage"]["cost"]
    return response


@dataclass(slots=True)
class _ToolSlot:
    """A chat tool call being assembled; ``index`` is None until its name is known."""

    call_id: str = ""
    name: str = ""
    pending: list[str] = field(default_factory=list)  # arguments seen before the name
    index: int | None = None  # canonical index, once started


class _ChatChunkReader:
    """Chat chunks in, canonical events out (first choice only)."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._slots: dict[int, _ToolSlot] = {}
        self._started = 0

    def read(self, chunk: dict) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        usage = Usage.from_openai_chat(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
            events.append(UsageUpdate(usage))
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not a Responses concept
            delta = choice.get("delta") or {}
            thinking = reasoning_text(delta)
            if thinking:
                events.append(ThinkingDelta(thinking))
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(TextDelta(content))
            for position, call in enumerate(delta.get("tool_calls") or []):
                if isinstance(call, dict):
                    self._tool_delta(events, call, position)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def close(self) -> list[StreamEvent]:
        """Start the calls whose name never came, then the finish."""
        events: list[StreamEvent] = []
        for slot in self._slots.values():
            if slot.index is None:
                self._start(events, slot)
        events.append(Finish(CHAT_FINISH.get(self.finish_reason or "", "stop")))
        return events

    def _tool_delta(self, events: list[StreamEvent], call: dict, position: int) -> None:
        index = call.get("index")
        if not isinstance(index, int):
            index = position  # servers that omit the index send calls whole, in order
        call_id = call.get("id") or ""
        function = call.get("function") or {}
        slot = self._slots.get(index)
        if slot is not None and call_id and slot.call_id and call_id != slot.call_id:
            # Ollama sends parallel calls all at index 0, told apart only by their ids.
            index = max(self._slots) + 1
            slot = None
        if slot is None:
            slot = self._slots[index] = _ToolSlot()
        if call_id and not slot.call_id:
            slot.call_id = call_id
        name = function.get("name")
        if isinstance(name, str) and name and not slot.name:
            slot.name = name
        arguments = function.get("arguments")
        fragment = arguments if isinstance(arguments, str) else ""
        if slot.index is None:
            if fragment:
                slot.pending.append(fragment)
            if slot.name:
                self._start(events, slot)
        elif fragment:
            events.append(ToolCallDelta(slot.index, fragment))

    def _start(self, events: list[StreamEvent], slot: _ToolSlot) -> None:
        slot.index = self._started
        self._started += 1
        events.append(ToolCallStart(slot.index, slot.call_id or new_call_id(), slot.name))
        if slot.pending:
            events.append(ToolCallDelta(slot.index, "".join(slot.pending)))
            slot.pending.clear()


class ChatStreamToResponses:
    """Stateful translator for one streamed response: chat chunks in, SSE frames out."""

    def __init__(
        self,
        *,
        response_id: str,
        model: str,
        created_at: int,
        request: dict,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = _ChatChunkReader()
        self._encoder = ResponsesStreamEncoder(_context(response_id, model, created_at, request), clock=clock)
        self._ended = False

    @property
    def usage(self) -> Usage | None:
        """Usage from the chat stream's usage chunk; None if none was seen."""
        return self._reader.usage

    @property
    def finish_reason(self) -> str | None:
        return self._reader.finish_reason

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``."""
        return self._encoder.start()

    def feed(self, chunk: dict) -> list[bytes]:
        """Frames for one parsed ``chat.completion.chunk``."""
        out = self._encoder.start()
        if self._ended:
            return out
        for event in self._reader.read(chunk):
            out += self._encoder.feed(event)
        return out

    def finish(self, *, usage_extra: dict | None = None) -> list[bytes]:
        """Close every open item, then ``response.completed`` / ``response.incomplete``."""
        out = self._encoder.start()
        if self._ended:
            return out
        self._ended = True
        for event in self._reader.close():
            out += self._encoder.feed(event)
        return out + self._encoder.complete(self._reader.usage, usage_extra)

    def fail(self, *, code: str, message: str) -> list[bytes]:
        """An ``error`` event (with ``code`` as given), then ``response.failed``."""
        self._ended = True
        return self._encoder.fail(code, message)
