"""The OpenAI Responses ``response`` object ⇄ canonical :class:`~aistats_gateway.canonical.Response`.

Client side (:func:`encode_response`): strict clients (the OpenAI SDK's models, the Vercel AI
SDK's zod schemas) need every output message to carry ``id``, ``type``, ``role``, ``status``,
every ``output_text`` part an ``annotations`` list, and every Response a ``usage`` object; the
builders here always do. The stream encoder (:mod:`.stream`) uses the same builders, so a
streamed response ends with exactly the object a non-streamed one returns.

* Output order: reasoning items (one per thinking part, its text as the summary), the single
  message item (all text of the answer, where the first text appeared; an empty one when the
  answer has neither text nor tool calls), one function_call item per tool call.
* A message in an incomplete response has status ``incomplete``; function_call items are always
  ``completed`` (the Vercel AI SDK rejects any other status on them) and the response's own
  status tells that it was cut short.
* Item ids: the message is ``msg_<ULID of the generation>`` (the generation lookup accepts it),
  reasoning items ``rs_<ULID>[_n]``, function calls ``fc_<ULID>_<n>``: unique, because the
  generation id is.
* Images in a model's answer have no place in a Responses message and are left out.

Provider side (:func:`decode_response`): reasoning items become thinking parts (summary texts,
else the raw ``reasoning_text`` content, joined by a blank line; encrypted content is
OpenAI-only and not kept), message ``output_text`` and ``refusal`` parts become text (a refusal
is the model's answer to the user), function_call items become tool calls. Hosted-tool items
are ignored: the gateway never asks for hosted tools.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
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
from ...ids import derive
from ..base import ResponseContext

RESPONSE_PREFIX = "resp_"

# Canonical finish reason -> incomplete_details.reason; any other reason completes the response.
INCOMPLETE_REASONS: dict[str, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}

# A provider's incomplete_details.reason -> canonical finish reason.
FINISH_FOR_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}
# What an incomplete response without a known reason is taken for: it was cut short.
DEFAULT_INCOMPLETE_FINISH: FinishReason = "length"

# The codes a Response's `error.code` may take that the gateway's own reasons map to (OpenAI's
# enum is checked by typed clients); anything else is a server error.
FAILED_CODES: dict[str, str] = {
    "server_error": "server_error",
    "rate_limit_exceeded": "rate_limit_exceeded",
    "invalid_prompt": "invalid_prompt",
    "rate_limit_error": "rate_limit_exceeded",
}

REASONING_SEPARATOR = "\n\n"  # between summary parts (or reasoning items) read back as one text


# --- ids ---------------------------------------------------------------------------------------


def _suffix(response_id: str) -> str:
    return response_id[len(RESPONSE_PREFIX) :] if response_id.startswith(RESPONSE_PREFIX) else response_id


def response_id_for(ctx: ResponseContext) -> str:
    """The ``resp_…`` id of the generation ``ctx`` serves."""
    return derive(ctx.generation_id, RESPONSE_PREFIX)


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
    """A ``call_id`` for a tool call that came without one."""
    return "call_" + secrets.token_hex(12)


def failed_code(reason: str) -> str:
    """The ``error.code`` of a failed Response for a gateway reason or code (see FAILED_CODES)."""
    return FAILED_CODES.get(reason, "server_error")


# --- item builders -----------------------------------------------------------------------------


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """An assistant message item; ``text=None`` gives the empty shell announced by a stream."""
    content = [] if text is None else [output_text_part(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, text: str | None) -> dict[str, Any]:
    """A reasoning item whose summary is the model's reasoning text (None: not yet known)."""
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
    """Response ``status`` and ``incomplete_details`` for a canonical finish reason."""
    reason = INCOMPLETE_REASONS.get(finish_reason or "")
    if reason is None:
        return "completed", None
    return "incomplete", {"reason": reason}


# --- usage -------------------------------------------------------------------------------------


def usage_object(usage: Usage | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Responses ``usage`` object (zeros when there is none: strict clients require the
    object), merged with ``extra`` (the gateway's ``cost``)."""
    usage = usage or Usage()
    rendered = usage.to_openai_responses()
    # Current OpenAI responses always carry it (the SDK's model requires it).
    rendered["input_tokens_details"]["cache_write_tokens"] = usage.cache_write_tokens
    if extra:
        rendered.update(extra)
    return rendered


def read_usage(usage: Any) -> Usage | None:
    """A provider's Responses ``usage`` object as canonical usage (cache writes included)."""
    if not isinstance(usage, dict):
        return None
    return Usage.from_openai_responses(usage)


# --- the Response object (client side) ---------------------------------------------------------


def response_object(
    *,
    response_id: str,
    model: str,
    created_at: int,
    request: dict[str, Any],
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


def encode_response(
    response: Response,
    ctx: ResponseContext,
    cost_usd: float,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The Response object a client gets for a canonical answer; ``usage.cost`` is ``cost_usd``."""
    response_id = response_id_for(ctx)
    status, incomplete = finish_status(response.finish_reason)
    item_status = "completed" if status == "completed" else "incomplete"

    output: list[dict[str, Any] | None] = []
    message_slot: int | None = None
    texts: list[str] = []
    reasoning_count = call_count = 0
    for part in response.parts:
        if isinstance(part, ThinkingPart):
            if part.text:
                output.append(reasoning_item(reasoning_id(response_id, reasoning_count), part.text))
                reasoning_count += 1
        elif isinstance(part, TextPart):
            texts.append(part.text)
            if message_slot is None:
                message_slot = len(output)
                output.append(None)  # the message goes where the answer's text began
        elif isinstance(part, ToolCallPart):
            output.append(
                function_call_item(
                    function_call_id(response_id, call_count),
                    part.id or new_call_id(),
                    part.name,
                    part.arguments,
                    "completed",
                )
            )
            call_count += 1
    text = "".join(texts)
    message = message_item(message_id(response_id), text, item_status)
    if message_slot is not None:
        output[message_slot] = message if text or not call_count else None
    elif not call_count:
        output.append(message)  # a Response always has an answer (possibly empty)

    return response_object(
        response_id=response_id,
        model=ctx.model,
        created_at=ctx.created,
        request=ctx.request,
        status=status,
        output=[item for item in output if item is not None],
        usage=usage_object(response.usage, {"cost": cost_usd}),
        incomplete_details=incomplete,
        completed_at=int(clock()) if status == "completed" else None,
    )


# --- the Response object (provider side) -------------------------------------------------------


def reasoning_item_text(item: dict[str, Any]) -> str:
    """The text of a provider's reasoning item: its summary, else its raw reasoning content."""
    for key, kind in (("summary", "summary_text"), ("content", "reasoning_text")):
        texts = [
            str(part.get("text") or "")
            for part in item.get(key) or ()
            if isinstance(part, dict) and part.get("type") == kind
        ]
        if any(texts):
            return REASONING_SEPARATOR.join(texts)
    return ""


def message_item_text(item: dict[str, Any]) -> str:
    """The text of a provider's message item: output_text and refusal parts, in order."""
    texts = []
    for part in item.get("content") or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "output_text":
            texts.append(str(part.get("text") or ""))
        elif part.get("type") == "refusal":
            texts.append(str(part.get("refusal") or ""))
    return "".join(texts)


def finish_reason_of(response: dict[str, Any], has_tool_calls: bool) -> FinishReason:
    """The canonical finish reason of a provider's finished Response object."""
    status = response.get("status")
    if status == "failed" or status == "cancelled":
        raise failure(response)
    if status == "incomplete":
        details = response.get("incomplete_details") or {}
        return FINISH_FOR_INCOMPLETE.get(str(details.get("reason")), DEFAULT_INCOMPLETE_FINISH)
    return "tool_calls" if has_tool_calls else "stop"


def failure(response: dict[str, Any]) -> GatewayError:
    """The gateway error for a provider's failed (or cancelled) Response."""
    error = response.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else None
    return GatewayError(
        "provider_error", str(message or f"The provider's response {response.get('status') or 'failed'}")
    )


def decode_response(body: dict[str, Any]) -> Response:
    """A provider's whole Response object as a canonical answer."""
    if not isinstance(body, dict) or body.get("object", "response") != "response":
        raise GatewayError("provider_error", "The provider sent something other than a Response object")
    parts: list[Part] = []
    for item in body.get("output") or ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "reasoning":
            thinking = reasoning_item_text(item)
            if thinking:
                parts.append(ThinkingPart(thinking))
        elif kind == "message":
            text = message_item_text(item)
            if parts and isinstance(parts[-1], TextPart):
                parts[-1].text += text
            else:
                parts.append(TextPart(text))
        elif kind == "function_call":
            parts.append(
                ToolCallPart(
                    id=str(item.get("call_id") or item.get("id") or new_call_id()),
                    name=str(item.get("name") or ""),
                    arguments=str(item.get("arguments") or ""),
                )
            )
    has_calls = any(isinstance(part, ToolCallPart) for part in parts)
    return Response(
        parts=parts,
        finish_reason=finish_reason_of(body, has_calls),
        usage=read_usage(body.get("usage")),
        id=body.get("id"),
        model=body.get("model"),
    )
