"""OpenAI Responses ⇄ Chat Completions: the entry points the pipeline calls.

* :func:`responses_request_to_chat` (module :mod:`.responses_request`) — the request.
* :func:`chat_response_to_responses` (here) — a complete chat.completion as a Response.
* :class:`ChatStreamToResponses` (module :mod:`.responses_stream`) — a chat stream as Responses
  events, chunk by chunk.

The shapes they share (ids, items, the Response object) are in :mod:`.responses_objects`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aistats_gateway.canonical import Usage
from aistats_gateway.formats.responses_objects import (
    content_text,
    finish_status,
    function_call_id,
    function_call_item,
    message_id,
    message_item,
    new_call_id,
    reasoning_id,
    reasoning_item,
    reasoning_text,
    response_object,
    usage_object,
)
from aistats_gateway.formats.responses_request import responses_request_to_chat
from aistats_gateway.formats.responses_stream import ChatStreamToResponses

__all__ = ["ChatStreamToResponses", "chat_response_to_responses", "responses_request_to_chat"]


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

    Output order: a reasoning item (when the provider returned reasoning text), the message
    (when there is text, or no tool call at all), then one function_call item per tool call.
    ``usage`` has no ``cost`` yet: the caller adds it.
    """
    choices = chat.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    status, incomplete = finish_status(choice.get("finish_reason"))
    item_status = "completed" if status == "completed" else "incomplete"

    output: list[dict[str, Any]] = []
    thinking = reasoning_text(message)
    if thinking:
        output.append(reasoning_item(reasoning_id(response_id), thinking))
    text = content_text(message.get("content"))
    tool_calls = [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    if text or not tool_calls:
        output.append(message_item(message_id(response_id), text, item_status))
    for n, call in enumerate(tool_calls):
        function = call.get("function") or {}
        output.append(
            function_call_item(
                function_call_id(response_id, n),
                call.get("id") or new_call_id(),
                function.get("name") or "",
                function.get("arguments") or "",
                "completed",
            )
        )
    return response_object(
        response_id=response_id,
        model=model,
        created_at=created_at,
        request=request,
        status=status,
        output=output,
        usage=usage_object(Usage.from_openai_chat(chat.get("usage"))),
        incomplete_details=incomplete,
        completed_at=int(clock()) if status == "completed" else None,
    )
