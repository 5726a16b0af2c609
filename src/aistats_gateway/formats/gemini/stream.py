"""Gemini ``streamGenerateContent?alt=sse`` → canonical stream events (provider side).

Each ``data:`` frame is a whole ``GenerateContentResponse`` holding the next parts. What real
streams do, and how it is read:

- ``usageMetadata`` rides on every chunk with cumulative counts (the last is authoritative):
  a :class:`UsageUpdate` whenever the counts change;
- ``finishReason`` comes on the last chunk: one :class:`Finish` (``tool_calls`` when a call was
  seen and Gemini said ``STOP``), after that chunk's content and usage;
- a ``functionCall`` part arrives whole: :class:`ToolCallStart` and one :class:`ToolCallDelta`
  with the whole JSON arguments;
- ``thoughtSignature`` becomes a :class:`ThinkingSignature`, before a call's events and after a
  thought's or a text's delta (the same placement as :mod:`.response`);
- ``{"error": {code, message, status}}`` as a chunk: ``GatewayError("provider_error")``.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...api.errors import GatewayError
from ...canonical import (
    Finish,
    FinishReason,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ThinkingSignature,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageUpdate,
)
from ..sse import ServerSentEvent
from .response import (
    arguments_json,
    blocked_prompt,
    call_id,
    candidate_parts,
    finish_reason,
    usage_from_metadata,
)


class GeminiStreamDecoder:
    """Decodes one Gemini SSE stream; remembers usage, the finish reason and output size."""

    __slots__ = ("_calls", "_finish", "_output_chars", "_usage")

    def __init__(self) -> None:
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None
        self._output_chars = 0
        self._calls = 0

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._finish

    @property
    def output_chars(self) -> int:
        return self._output_chars

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]:
        """Decode one ``data:`` frame; raise ``provider_error`` for an in-stream error chunk."""
        data = event.data.strip()
        if not data:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(
                "provider_error", f"Gemini sent an unreadable stream chunk: {data[:200]}"
            ) from exc
        if not isinstance(payload, dict):
            raise GatewayError("provider_error", f"Gemini sent an unexpected stream chunk: {data[:200]}")
        if "error" in payload:
            raise GatewayError("provider_error", _error_message(payload["error"]))

        candidate, parts = candidate_parts(payload)
        events: list[StreamEvent] = []
        for part in parts:
            self._part(part, events)
        usage = usage_from_metadata(payload.get("usageMetadata"))
        if usage is not None and usage != self._usage:
            self._usage = usage
            events.append(UsageUpdate(usage))
        if self._finish is None:
            native = candidate.get("finishReason") if candidate else None
            if native:
                self._finish = finish_reason(native, self._calls > 0)
            elif blocked_prompt(payload):
                self._finish = "content_filter"
            if self._finish is not None:
                events.append(Finish(self._finish))
        return events

    def _part(self, part: dict[str, Any], events: list[StreamEvent]) -> None:
        signature = part.get("thoughtSignature")
        text = part.get("text")
        function_call = part.get("functionCall")
        if isinstance(function_call, dict):
            if signature:
                events.append(ThinkingSignature(str(signature)))
            arguments = arguments_json(function_call.get("args"))
            index = self._calls
            self._calls += 1
            self._output_chars += len(arguments)
            events.append(ToolCallStart(index, call_id(function_call), str(function_call.get("name") or "")))
            events.append(ToolCallDelta(index, arguments))
            return
        if isinstance(text, str) and text:
            self._output_chars += len(text)
            events.append(ThinkingDelta(text) if part.get("thought") is True else TextDelta(text))
        if signature:
            events.append(ThinkingSignature(str(signature)))


def _error_message(error: Any) -> str:
    """The provider's message of an in-stream ``error`` object."""
    if isinstance(error, dict):
        message = error.get("message")
        if message:
            return str(message)
        return f"Gemini stream failed: {error.get('status') or error.get('code') or 'unknown error'}"
    return str(error)
