"""Provider side: Anthropic Messages SSE events → canonical stream events.

``message_start`` carries the input counts (→ UsageUpdate); ``content_block_start`` of a
``tool_use`` block starts a tool call (numbered from 0 across the message); deltas become
Text/Thinking/Signature/ToolCall deltas; ``message_delta`` carries the stop reason (→ Finish)
and cumulative usage, merged over ``message_start``'s (fields it leaves out keep their earlier
values). The synthetic structured-output tool's input fragments are the answer's text.
``ping``, ``content_block_stop``, ``message_stop`` and unknown event types (Anthropic may add
some) produce nothing; an ``error`` event raises ``GatewayError("provider_error")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

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
from .wire import STOP_TO_FINISH, STRUCTURED_TOOL, provider_error, usage_from_wire

_STRUCTURED = -1  # block-to-tool map value for the structured-output tool's block


class MessagesStreamDecoder:
    """One upstream Anthropic stream; remembers usage, finish reason and output size."""

    def __init__(self) -> None:
        self._usage: Usage | None = None
        self._wire_usage: dict[str, Any] = {}
        self._finish_reason: FinishReason | None = None
        self._output_chars = 0
        self._tools: dict[int, int] = {}  # Anthropic block index -> canonical tool index
        self._next_tool = 0

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._finish_reason

    @property
    def output_chars(self) -> int:
        """Characters of text and tool arguments seen (for an estimate when usage is missing)."""
        return self._output_chars

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]:
        """Canonical events for one SSE event; raise ``provider_error`` for an ``error`` event."""
        try:
            data = event.json()
        except ValueError as exc:
            raise GatewayError("provider_error", "the provider sent a malformed stream event") from exc
        if not isinstance(data, dict):
            return []
        kind = data.get("type") or event.event
        handler = _EVENT_HANDLERS.get(kind) if isinstance(kind, str) else None
        return handler(self, data) if handler is not None else []

    # --- events ------------------------------------------------------------------------------

    def _message_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        message = data.get("message")
        usage = message.get("usage") if isinstance(message, dict) else None
        return self._merge_usage(usage)

    def _content_block_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        block = data.get("content_block")
        index = data.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        kind = block.get("type")
        if kind == "tool_use":
            if block.get("name") == STRUCTURED_TOOL:
                self._tools[index] = _STRUCTURED
                return []
            tool = self._next_tool
            self._next_tool += 1
            self._tools[index] = tool
            return [
                ToolCallStart(index=tool, id=str(block.get("id") or ""), name=str(block.get("name") or ""))
            ]
        # Anthropic opens text and thinking blocks empty; any initial content is passed on.
        events: list[StreamEvent] = []
        if kind == "text" and block.get("text"):
            events.append(self._text(str(block["text"])))
        elif kind == "thinking":
            if block.get("thinking"):
                events.append(ThinkingDelta(str(block["thinking"])))
            if block.get("signature"):
                events.append(ThinkingSignature(str(block["signature"])))
        return events

    def _content_block_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "input_json_delta":
            return self._tool_input(data.get("index"), str(delta.get("partial_json") or ""))
        reader = _DELTA_READERS.get(kind) if isinstance(kind, str) else None
        if reader is None:
            return []  # e.g. citations_delta: nothing canonical carries it
        event = reader(self, delta)
        return [event] if event is not None else []

    def _tool_input(self, index: Any, fragment: str) -> list[StreamEvent]:
        tool = self._tools.get(index) if isinstance(index, int) else None
        if not fragment or tool is None:
            return []
        if tool == _STRUCTURED:
            return [self._text(fragment)]
        self._output_chars += len(fragment)
        return [ToolCallDelta(index=tool, arguments=fragment)]

    def _message_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        events = self._merge_usage(data.get("usage"))
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is not None:
            reason = STOP_TO_FINISH.get(stop_reason, "stop")
            if reason == "tool_calls" and self._next_tool == 0:
                reason = "stop"  # only the structured-output tool was called: that is the answer
            self._finish_reason = reason
            stop_sequence = delta.get("stop_sequence") if isinstance(delta, dict) else None
            events.append(Finish(reason=reason, stop_sequence=stop_sequence))
        return events

    def _error(self, data: dict[str, Any]) -> list[StreamEvent]:
        raise provider_error(data)

    # --- helpers -----------------------------------------------------------------------------

    def _merge_usage(self, usage: Any) -> list[StreamEvent]:
        """Cumulative usage: fields present overwrite earlier values, absent ones are kept."""
        if not isinstance(usage, dict):
            return []
        self._wire_usage.update({key: value for key, value in usage.items() if value is not None})
        merged = usage_from_wire(self._wire_usage)
        if merged is None:
            return []
        self._usage = merged
        return [UsageUpdate(replace(merged))]

    def _text(self, text: str) -> TextDelta:
        self._output_chars += len(text)
        return TextDelta(text)

    def _text_delta(self, delta: dict[str, Any]) -> StreamEvent | None:
        text = str(delta.get("text") or "")
        return self._text(text) if text else None

    def _thinking_delta(self, delta: dict[str, Any]) -> StreamEvent | None:
        text = str(delta.get("thinking") or "")
        return ThinkingDelta(text) if text else None

    def _signature_delta(self, delta: dict[str, Any]) -> StreamEvent | None:
        signature = str(delta.get("signature") or "")
        return ThinkingSignature(signature) if signature else None


_EVENT_HANDLERS: dict[str, Callable[[MessagesStreamDecoder, dict[str, Any]], list[StreamEvent]]] = {
    "message_start": MessagesStreamDecoder._message_start,
    "content_block_start": MessagesStreamDecoder._content_block_start,
    "content_block_delta": MessagesStreamDecoder._content_block_delta,
    "message_delta": MessagesStreamDecoder._message_delta,
    "error": MessagesStreamDecoder._error,
}
_DELTA_READERS: dict[str, Callable[[MessagesStreamDecoder, dict[str, Any]], StreamEvent | None]] = {
    "text_delta": MessagesStreamDecoder._text_delta,
    "thinking_delta": MessagesStreamDecoder._thinking_delta,
    "signature_delta": MessagesStreamDecoder._signature_delta,
}
