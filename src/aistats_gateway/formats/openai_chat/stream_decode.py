"""Provider side: a Chat Completions stream (``data:`` chunks) as canonical stream events.

Per chunk (first choice only): a role-only delta gives nothing; ``content`` (and a
``refusal``) gives TextDelta; ``reasoning_content`` or ``reasoning`` gives ThinkingDelta (one of
them when a server sends both with the same text); ``tool_calls`` deltas give ToolCallStart
once a call's name is known, then ToolCallDelta for each arguments fragment (fragments that come
before the name are held, then sent right after the start); ``finish_reason`` gives Finish;
``usage`` (on its own chunk, on the finish chunk, or Groq's ``x_groq.usage``) gives
UsageUpdate; ``[DONE]`` gives nothing; an ``{"error": …}`` chunk (or an ``event: error``, which
some servers send) raises ``provider_error``.

Tool calls are keyed by their chat ``index``; a server that reuses one index for parallel
calls (Ollama) or sends none is recognised by a new call id. Canonical indexes number the
calls 0, 1, 2… in the order they start, whatever the provider's indexes are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ...api.errors import GatewayError
from ...canonical import (
    Finish,
    FinishReason,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageUpdate,
)
from ..sse import ServerSentEvent
from .maps import usage_from_chat
from .response import content_text, finish_from_chat, new_call_id, provider_error, reasoning_of


@dataclass(slots=True)
class _Call:
    """One tool call being streamed."""

    id: str | None = None
    name: str | None = None
    index: int | None = None  # canonical index, once started
    held: list[str] = field(default_factory=list)  # argument fragments before the start


class ChatStreamDecoder:
    """Feed it the provider's SSE events; it returns canonical events and remembers usage."""

    def __init__(self) -> None:
        self._usage: Usage | None = None
        self._finish_reason: FinishReason | None = None
        self._output_chars = 0
        self._calls: list[_Call] = []
        self._by_id: dict[str, _Call] = {}
        self._by_index: dict[int, _Call] = {}  # the latest call seen at each provider index
        self._started = 0

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._finish_reason

    @property
    def output_chars(self) -> int:
        return self._output_chars

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]:
        """Decode one SSE event (raises GatewayError("provider_error") for an error chunk)."""
        data = event.data.strip()
        if not data or data == "[DONE]":
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise GatewayError("provider_error", "The provider sent an invalid stream chunk") from exc
        if not isinstance(chunk, dict):
            raise GatewayError("provider_error", "The provider sent a non-object stream chunk")
        if event.event == "error" and "error" not in chunk:
            raise provider_error({"error": chunk})
        if "error" in chunk and not chunk.get("choices"):
            raise provider_error(chunk)

        events: list[StreamEvent] = []
        choices = chunk.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else None
        if choice is not None:
            self._delta(choice.get("delta") or {}, events)
            if choice.get("finish_reason") and self._finish_reason is None:
                self._finish(choice["finish_reason"], events)
        usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
        parsed = usage_from_chat(usage) if isinstance(usage, dict) else None
        if parsed is not None:
            self._usage = parsed
            events.append(UsageUpdate(parsed))
        return events

    def _delta(self, delta: dict[str, Any], events: list[StreamEvent]) -> None:
        thinking = reasoning_of(delta)
        if thinking:
            self._output_chars += len(thinking)
            events.append(ThinkingDelta(thinking))
        text = content_text(delta.get("content")) or str(delta.get("refusal") or "")
        if text:
            self._output_chars += len(text)
            events.append(TextDelta(text))
        for position, call in enumerate(delta.get("tool_calls") or []):
            if isinstance(call, dict):
                self._tool_call(call, position, events)

    def _tool_call(self, delta: dict[str, Any], position: int, events: list[StreamEvent]) -> None:
        function = delta.get("function") or {}
        name = function.get("name") or None
        call = self._call(delta.get("id") or None, delta.get("index"), position, name)
        if call.name is None and name:
            call.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # a few servers send the object itself
            arguments = orjson.dumps(arguments).decode()
        if arguments:
            self._output_chars += len(arguments)
            call.held.append(arguments)
        if call.index is None and call.name is not None:
            call.index = self._started
            self._started += 1
            events.append(ToolCallStart(call.index, call.id or new_call_id(), call.name))
        if call.index is not None and call.held:
            events.extend(ToolCallDelta(call.index, fragment) for fragment in call.held)
            call.held.clear()

    def _call(self, call_id: str | None, index: Any, position: int, name: str | None) -> _Call:
        """The call a tool-call delta belongs to (see the module docstring)."""
        if not isinstance(index, int) or isinstance(index, bool):
            index = position
        known = self._by_index.get(index)
        if call_id is not None and call_id in self._by_id:
            call = self._by_id[call_id]
        elif call_id is not None and known is not None and known.id is None:
            call = known  # the id came after the name
        elif call_id is None and known is not None and not (name and known.name):
            call = known  # a continuation
        else:
            call = _Call()
            self._calls.append(call)
        if call_id is not None and call.id is None:
            call.id = call_id
            self._by_id[call_id] = call
        self._by_index[index] = call
        return call

    def _finish(self, value: Any, events: list[StreamEvent]) -> None:
        if any(call.index is None and call.held for call in self._calls):
            raise GatewayError("provider_error", "The provider streamed a tool call without a name")
        self._finish_reason = finish_from_chat(value, self._started > 0)
        events.append(Finish(self._finish_reason))
