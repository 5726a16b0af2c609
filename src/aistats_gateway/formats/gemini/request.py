"""Canonical :class:`Request` → Gemini ``generateContent`` body (provider side).

The model goes in the URL (``models/{model}:generateContent``), so the body has no ``model``;
whether to stream is the URL too (``:streamGenerateContent?alt=sse``). Choices made here:

- ``system`` → ``systemInstruction``; roles ``user``/``assistant`` → ``user``/``model``;
  consecutive contents of one role are merged (Gemini wants turns to alternate).
- Thinking parts in the history are dropped (Gemini does not take thoughts back); their
  ``signature`` is put back as ``thoughtSignature`` on the part it came with (see
  :mod:`.response`): the following ``functionCall``, else the preceding part, else the next.
- Tool results → ``functionResponse {name, response: {"result": value}}`` (``{"error": value}``
  when the result is an error), where value is the JSON the text parses as, else the text.
  The name is the result's own, else the name of the earlier call with that id. Images in a
  tool result follow it as ``inlineData`` parts. Call ids are not sent: Gemini pairs calls and
  responses by order and name, and ids it did not issue could be refused.
- Images: base64 → ``inlineData``; ``gs://`` and Gemini Files API URIs → ``fileData``; an
  http(s) URL is refused (the gateway never fetches user URLs). OpenAI's ``detail`` hint has
  no Gemini equivalent and is ignored.
- Tools → ``functionDeclarations`` with ``parametersJsonSchema`` (JSON Schema kept intact, not
  the OpenAPI subset of ``parameters``). ``strict`` is ignored: Gemini has no per-tool switch.
- Structured output → ``responseMimeType: application/json`` (+ ``responseJsonSchema``).
- Reasoning → ``thinkingConfig {thinkingBudget, includeThoughts}``.
- ``user`` is an end-user identifier with no Gemini field; it is dropped.
- ``parallel_tool_calls: false`` is refused when calls are possible (tools, and a tool choice
  other than ``none``): Gemini cannot turn parallel calls off.
- ``extras``: ``seed``/``presence_penalty``/``frequency_penalty`` map into
  ``generationConfig``; ``n: 1`` and ``logprobs: false`` ask for nothing; anything else
  (``n`` > 1, ``logprobs``, ``top_logprobs``, ``logit_bias``…) is refused with a 400 naming it.
"""

from __future__ import annotations

import binascii
import json
import mimetypes
from base64 import b64decode
from typing import Any

from ...api.errors import GatewayError, invalid
from ...canonical import (
    ImagePart,
    Message,
    OutputFormat,
    Part,
    Request,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from ..base import Target

FORMAT = "gemini"

ROLES: dict[str, str] = {"user": "user", "assistant": "model"}

# Canonical tool_choice mode -> functionCallingConfig.mode ("tool" adds allowedFunctionNames).
FUNCTION_CALLING_MODES: dict[str, str] = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}

# Request.extras keys Gemini honours, and their generationConfig field.
GENERATION_EXTRAS: dict[str, str] = {
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}

# Request.extras values that ask for nothing beyond the default.
NEUTRAL_EXTRAS: dict[str, Any] = {"n": 1, "logprobs": False, "top_logprobs": 0}

# Why an extra is refused, when there is more to say than "not supported".
REFUSAL_REASONS: dict[str, str] = {
    "n": "the gateway returns one choice; only n=1 is accepted",
    "logprobs": "the gateway does not return Gemini log probabilities",
    "top_logprobs": "the gateway does not return Gemini log probabilities",
}

# Image URIs Gemini reads itself: Cloud Storage and its own Files API.
FILE_URI_PREFIXES = ("gs://", "https://generativelanguage.googleapis.com/")


def unsupported(param: str, target: Target, reason: str | None = None) -> GatewayError:
    """The 400 for a feature Gemini cannot express, naming the parameter and the provider."""
    message = f"'{param}' is not supported by provider '{target.provider}' ({FORMAT})"
    if reason:
        message += f": {reason}"
    return invalid(message + ".", param=param, code="unsupported_parameter")


def encode_request(request: Request, target: Target) -> dict[str, Any]:
    """The ``generateContent`` request body for ``request`` (the model goes in the URL)."""
    body: dict[str, Any] = {"contents": _contents(request.messages, target)}
    system = [{"text": part.text} for part in request.system if part.text]
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_function(tool) for tool in request.tools]}]
        choice = request.tool_choice
        if request.parallel_tool_calls is False and (choice is None or choice.mode != "none"):
            raise unsupported("parallel_tool_calls", target, "Gemini cannot disable parallel function calls")
    tool_config = _tool_config(request.tool_choice, request.tools)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    config = _generation_config(request, target)
    if config:
        body["generationConfig"] = config
    return body


# --- contents ----------------------------------------------------------------------------------


def _contents(messages: list[Message], target: Target) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool-call id -> function name, from the calls seen so far
    contents: list[dict[str, Any]] = []
    for message in messages:
        role = ROLES[message.role]
        parts = _message_parts(message, names, target)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _message_parts(message: Message, names: dict[str, str], target: Target) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pending: str | None = None  # a thought signature waiting for its part
    for part in message.parts:
        if isinstance(part, ThinkingPart):
            if part.signature and message.role == "assistant":
                pending = part.signature
            continue
        encoded = _part(part, names, target)
        if not encoded:
            continue
        if pending is not None:
            if isinstance(part, ToolCallPart) or not out:
                encoded[0]["thoughtSignature"] = pending
            else:
                out[-1].setdefault("thoughtSignature", pending)
            pending = None
        out.extend(encoded)
    if pending is not None and out:
        out[-1].setdefault("thoughtSignature", pending)
    return out


def _part(part: Part, names: dict[str, str], target: Target) -> list[dict[str, Any]]:
    """The Gemini parts for one canonical part (none for an empty text)."""
    if isinstance(part, TextPart):
        return [{"text": part.text}] if part.text else []
    if isinstance(part, ImagePart):
        return [_image(part, target)]
    if isinstance(part, ToolCallPart):
        names[part.id] = part.name
        return [{"functionCall": {"name": part.name, "args": _arguments(part)}}]
    if isinstance(part, ToolResultPart):
        return _tool_result(part, names, target)
    return []


def _arguments(call: ToolCallPart) -> dict[str, Any]:
    """A call's JSON arguments text as the object Gemini's ``args`` wants."""
    if not call.arguments.strip():
        return {}
    try:
        args = json.loads(call.arguments)
    except json.JSONDecodeError as exc:
        raise invalid(
            f"The arguments of tool call '{call.id}' ({call.name}) are not valid JSON.", param="messages"
        ) from exc
    if not isinstance(args, dict):
        raise invalid(
            f"The arguments of tool call '{call.id}' ({call.name}) must be a JSON object.", param="messages"
        )
    return args


def _tool_result(part: ToolResultPart, names: dict[str, str], target: Target) -> list[dict[str, Any]]:
    name = part.name or names.get(part.call_id)
    if not name:
        raise invalid(
            f"The tool result for call '{part.call_id}' needs the function name: provider "
            f"'{target.provider}' ({FORMAT}) matches results by name, and no earlier tool call "
            "has that id.",
            param="messages",
        )
    text = "\n".join(p.text for p in part.content if isinstance(p, TextPart))
    key = "error" if part.is_error else "result"
    response = {"functionResponse": {"name": name, "response": {key: _json_or_text(text)}}}
    images = [_image(p, target) for p in part.content if isinstance(p, ImagePart)]
    return [response, *images]


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _image(part: ImagePart, target: Target) -> dict[str, Any]:
    if part.data:
        if not part.media_type:
            raise invalid("An inline image needs its media type.", param="image_url")
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    url = part.url or ""
    if url.startswith("data:"):
        return {"inlineData": _data_url(url)}
    if url.startswith(FILE_URI_PREFIXES):
        file_data = {"fileUri": url}
        media_type = part.media_type or mimetypes.guess_type(url)[0]
        if media_type:
            file_data["mimeType"] = media_type
        return {"fileData": file_data}
    raise invalid(
        f"Provider '{target.provider}' ({FORMAT}) needs inline image bytes; the gateway does not "
        "fetch URLs. Send the image as a base64 data: URL.",
        param="image_url",
    )


def _data_url(url: str) -> dict[str, str]:
    header, _, data = url.partition(",")
    media_type = header[len("data:") :].partition(";")[0]
    if not header.endswith(";base64") or not media_type or not data:
        raise invalid("An image data: URL must be 'data:<media type>;base64,<data>'.", param="image_url")
    try:
        b64decode(data, validate=True)
    except binascii.Error as exc:
        raise invalid("An image data: URL holds invalid base64.", param="image_url") from exc
    return {"mimeType": media_type, "data": data}


# --- tools -------------------------------------------------------------------------------------


def _function(tool: Tool) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    if tool.parameters:
        declaration["parametersJsonSchema"] = tool.parameters
    return declaration


def _tool_config(choice: ToolChoice | None, tools: list[Tool]) -> dict[str, Any] | None:
    if choice is None:
        return None
    if not tools:
        if choice.mode in ("required", "tool"):
            raise invalid(f"tool_choice '{choice.mode}' needs at least one tool.", param="tool_choice")
        return None
    config: dict[str, Any] = {"mode": FUNCTION_CALLING_MODES[choice.mode]}
    if choice.mode == "tool":
        if choice.name not in {tool.name for tool in tools}:
            raise invalid(
                f"tool_choice names '{choice.name}', which is not among the tools.", param="tool_choice"
            )
        config["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": config}


# --- generationConfig --------------------------------------------------------------------------


def _generation_config(request: Request, target: Target) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_output_tokens is not None:
        config["maxOutputTokens"] = request.max_output_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.top_k is not None:
        config["topK"] = request.top_k
    if request.stop:
        config["stopSequences"] = list(request.stop)
    config.update(_output_format(request.output_format))
    if request.reasoning is not None:
        config["thinkingConfig"] = {
            "thinkingBudget": request.reasoning.budget(),
            "includeThoughts": request.reasoning.include_thoughts,
        }
    for param, value in request.extras.items():
        if value is None:
            continue
        if param in GENERATION_EXTRAS:
            config[GENERATION_EXTRAS[param]] = value
        elif param not in NEUTRAL_EXTRAS or value != NEUTRAL_EXTRAS[param]:
            raise unsupported(param, target, REFUSAL_REASONS.get(param))
    return config


def _output_format(output: OutputFormat | None) -> dict[str, Any]:
    if output is None or output.type == "text":
        return {}
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if output.type == "json_schema" and output.schema is not None:
        config["responseJsonSchema"] = output.schema
    return config
