"""Provider side: a canonical :class:`Request` as a Chat Completions body for an
OpenAI-compatible server (vLLM, Ollama, llama.cpp, Groq, Together, OpenAI itself).

Decisions:

* ``Request.system`` becomes one leading ``system`` message, its parts joined with a blank
  line: many chat templates only honour a single, first system message.
* Text-only content is one string (parts joined with a newline, as vLLM flattens them);
  content with images stays a list of ``text`` / ``image_url`` parts. Inline images become
  ``data:`` URLs.
* Tool results become ``tool`` messages (in order, before any other content of the same
  turn). Chat has no error flag for a tool result: ``is_error`` is conveyed by the result text
  itself, which is what the model reads in every format. Images in tool results cannot be
  expressed (``tool`` content is text only) and are refused.
* Thinking parts in assistant history are dropped: chat has no input field for reasoning,
  and a provider that reasons re-derives it (what OpenAI-compatible servers expect).
* ``top_k`` is sent as ``top_k``: vLLM, Ollama and llama.cpp accept it (OpenAI answers with
  its own 400, which names it).
* ``max_output_tokens`` goes in ``max_tokens`` by default (every OpenAI-compatible server reads
  it; Ollama reads nothing else); the codec for OpenAI itself uses ``max_completion_tokens``,
  which its reasoning models require.
* ``parallel_tool_calls`` and a ``tool_choice`` of auto/none are only sent with tools: alone
  they ask for nothing, and OpenAI refuses them without ``tools`` (Responses clients send them
  by default).
* Streams always ask for ``stream_options: {include_usage: true}``: the gateway bills from it.
* Extras: the chat parameters whose effect is on the provider's side only (``seed``,
  penalties, ``logit_bias``, ``service_tier``…) are passed through under their own name.
  Those whose result the canonical Response cannot carry back (``n`` > 1, ``logprobs``,
  ``top_logprobs``, audio, moderation) and any key chat does not know are refused with a 400
  naming the parameter and the provider.
"""

from __future__ import annotations

from typing import Any

from ...api.errors import invalid
from ...canonical import (
    ImagePart,
    Message,
    OutputFormat,
    Request,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from ..base import Target
from .maps import DEFAULT_EXTRA_VALUES, PASSTHROUGH_EXTRAS, RESULT_EXTRAS, unsupported_by_provider

# Without tools, "auto"/"none" ask for nothing (and OpenAI rejects tool_choice and
# parallel_tool_calls without tools); a forced call is passed on for the provider to refuse.
FORCING_MODES = frozenset({"required", "tool"})
DEFAULT_SCHEMA_NAME = "response"  # chat requires json_schema.name; other formats may not carry one


def encode_request(request: Request, target: Target, max_tokens_param: str = "max_tokens") -> dict[str, Any]:
    """Build the chat body for ``request`` sent to ``target`` (raises a 400 for what chat
    cannot express)."""
    body: dict[str, Any] = {"model": target.model, "messages": _messages(request, target)}
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None and (request.tools or request.tool_choice.mode in FORCING_MODES):
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.max_output_tokens is not None:
        body[max_tokens_param] = request.max_output_tokens
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.output_format is not None:
        body["response_format"] = _response_format(request.output_format)
    if request.reasoning is not None:
        body["reasoning_effort"] = request.reasoning.level()
    if request.user:
        body["user"] = request.user
    for name, value in request.extras.items():
        body[name] = _extra(name, value, target)
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _extra(name: str, value: Any, target: Target) -> Any:
    if name in PASSTHROUGH_EXTRAS:
        return value
    if name in RESULT_EXTRAS and value in DEFAULT_EXTRA_VALUES.get(name, ()):
        return value
    raise invalid(unsupported_by_provider(name, target.provider), param=name)


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters:  # chat: an omitted `parameters` is an empty parameter list
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> Any:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _response_format(fmt: OutputFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec: dict[str, Any] = {"name": fmt.name or DEFAULT_SCHEMA_NAME}
    if fmt.schema is not None:
        spec["schema"] = fmt.schema
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


# --- messages --------------------------------------------------------------------------------


def _messages(request: Request, target: Target) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = "\n\n".join(part.text for part in request.system if part.text)
    if system:
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        if message.role == "assistant":
            messages.append(_assistant(message, target))
        else:
            messages.extend(_user(message, target))
    return messages


def _user(message: Message, target: Target) -> list[dict[str, Any]]:
    """One canonical user turn: its tool results as ``tool`` messages, then the rest."""
    out: list[dict[str, Any]] = []
    content: list[TextPart | ImagePart] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            out.append(_tool_result(part, target))
        elif isinstance(part, TextPart | ImagePart):
            content.append(part)
        elif isinstance(part, ToolCallPart | ThinkingPart):
            raise invalid(
                unsupported_by_provider(f"user {part.type} parts", target.provider), param="messages"
            )
    if content or not out:
        out.append({"role": "user", "content": _content(content)})
    return out


def _content(parts: list[TextPart | ImagePart]) -> str | list[dict[str, Any]]:
    if all(isinstance(part, TextPart) for part in parts):
        return "\n".join(part.text for part in parts if isinstance(part, TextPart))
    return [_content_part(part) for part in parts]


def _content_part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if part.url is not None:
        url = part.url
    elif part.data and part.media_type:
        url = f"data:{part.media_type};base64,{part.data}"
    else:
        raise invalid("An image needs a 'url', or base64 'data' with its media type.", param="messages")
    image: dict[str, Any] = {"url": url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _tool_result(part: ToolResultPart, target: Target) -> dict[str, Any]:
    if any(isinstance(item, ImagePart) for item in part.content):
        raise invalid(unsupported_by_provider("images in tool results", target.provider), param="messages")
    text = "\n".join(item.text for item in part.content if isinstance(item, TextPart))
    return {"role": "tool", "tool_call_id": part.call_id, "content": text}


def _assistant(message: Message, target: Target) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ToolCallPart):
            calls.append(
                {
                    "id": part.id,
                    "type": "function",
                    "function": {"name": part.name, "arguments": part.arguments},
                }
            )
        elif isinstance(part, ImagePart | ToolResultPart):
            raise invalid(
                unsupported_by_provider(f"assistant {part.type} parts", target.provider), param="messages"
            )
        # ThinkingPart: dropped (see the module docstring).
    text = "\n".join(texts)
    out: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        out["tool_calls"] = calls
    return out
