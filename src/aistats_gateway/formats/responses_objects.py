"""The OpenAI Responses wire shapes: ids, output items, the Response object, usage.

Strict clients (the OpenAI SDK's models, the Vercel AI SDK's zod schemas) need every output
message to carry ``id``, ``type``, ``role``, ``status`` and every ``output_text`` part an
``annotations`` list, and every Response a ``usage`` object; the builders here always do.
The streaming translator (:mod:`aistats_gateway.formats.responses_stream`) uses the same
builders, so a streamed response ends with exactly the object a non-streamed one returns.

A message in an incomplete response has status ``incomplete``; function_call items are always
``completed`` (the Vercel AI SDK rejects any other status on them) and the response's own
status tells that it was cut short.

Item ids: the message is ``msg_<ULID of the response>`` (the generation lookup accepts it),
reasoning items ``rs_<ULID>[_n]``, function calls ``fc_<ULID>_<n>``: unique, because the
response id is.
"""

from __future__ import annotations

import secrets
from typing import Any

from aistats_gateway.canonical import Usage

RESPONSE_PREFIX = "resp_"
# finish_reason -> incomplete_details.reason; any other finish_reason completes the response.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _suffix(response_id: str) -> str:
    return response_id[len(RESPONSE_PREFIX) :] if response_id.startswith(RESPONSE_PREFIX) else response_id


def message_id(response_id: str) -> str:
    """The id of the (single) output message of ``response_id``."""
    return "msg_" + _suffix(response_id)


def reasoning_id(response_id: str, n: int = 0) -> str:
    """The id of the ``n``-th reasoning item of ``response_id``."""
    return "rs_" + _suffix(response_id) + (f"_{n}" if n else "")


def function_call_id(response_id: str, n: int) -> str:
    """The item id of the ``n``-th function call of ``response_id``."""
    return f"fc_{_suffix(response_id)}_{n}"


def new_call_id() -> str:
    """A ``call_id`` for an upstream tool call that came without one."""
    return "call_" + secrets.token_hex(12)


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """An assistant message item; ``text=None`` gives the empty shell announced by a stream."""
    content = [] if text is None else [output_text_part(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, text: str | None) -> dict[str, Any]:
    """A reasoning item whose summary is the provider's reasoning text (None: not yet known)."""
    summary = [] if text is None else [{"type": "summary_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": summary}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def finish_status(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """Response ``status`` and ``incomplete_details`` for a chat ``finish_reason``."""
    reason = INCOMPLETE_REASONS.get(finish_reason or "")
    if reason is None:
        return "completed", None
    return "incomplete", {"reason": reason}


def usage_object(usage: Usage | None, extra: dict | None = None) -> dict[str, Any]:
    """The Responses ``usage`` object (zeros when upstream sent none: strict clients require
    the object), merged with ``extra`` (the gateway's ``cost``)."""
    rendered = (usage or Usage()).to_openai_responses()
    # Current OpenAI responses always carry it (the SDK's model requires it); chat has no such count.
    rendered["input_tokens_details"].setdefault("cache_write_tokens", 0)
    if extra:
        rendered.update(extra)
    return rendered


def response_object(
    *,
    response_id: str,
    model: str,
    created_at: int,
    request: dict,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    error: dict[str, Any] | None = None,
    incomplete_details: dict[str, str] | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """A full Response object, echoing the request's settings as OpenAI does."""
    text = request.get("text")
    text = dict(text) if isinstance(text, dict) else {}
    text.setdefault("format", {"type": "text"})
    asked = request.get("reasoning")
    asked = asked if isinstance(asked, dict) else {}
    reasoning = {"effort": asked.get("effort"), "summary": asked.get("summary")}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": completed_at,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "model": model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": reasoning,
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": "default",
        "store": False,
        "temperature": request.get("temperature"),
        "text": text,
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": list(request.get("tools") or []),
        "top_logprobs": 0,
        "top_p": request.get("top_p"),
        "truncation": "disabled",
        "usage": usage,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


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
