"""Responses streams ⇄ canonical stream events.

:class:`ResponsesStreamEncoder` (client side) turns canonical events into Responses SSE events
as each one arrives; nothing is held back. Item lifecycle:

* thinking deltas open a reasoning item with one summary part; it is closed as soon as answer
  text or a tool call starts. Thinking that comes back later opens a new reasoning item.
* answer text opens the (single) message item and its ``output_text`` part on the first
  non-empty delta; it stays open until :meth:`~ResponsesStreamEncoder.finish`, so text that
  comes between tool calls still lands in it.
* each tool call (by its canonical ``index``) gets its own function_call item, opened by its
  :class:`~aistats_gateway.canonical.ToolCallStart` and closed at the end.

:meth:`~ResponsesStreamEncoder.finish` closes every open item in ``output_index`` order and
sends ``response.completed`` (or ``response.incomplete``) carrying the same object that
:func:`~.objects.encode_response` builds for the same answer.

:class:`ResponsesStreamDecoder` (provider side) reads an OpenAI/xAI Responses stream:
``output_text.delta`` (and ``refusal.delta``) → text, ``reasoning_summary_text.delta`` /
``reasoning_text.delta`` → thinking (a blank line between summary parts), function_call items →
tool calls numbered in order of appearance, ``response.completed``/``incomplete`` → usage and the
finish, ``error``/``response.failed`` → ``GatewayError("provider_error")``. Text, thinking or
arguments that a provider sends only in the ``.done``/``output_item.done``/terminal events
(and not as deltas) are emitted from there, never twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
from ..base import ResponseContext
from ..sse import ServerSentEvent, encode_event
from .objects import (
    REASONING_SEPARATOR,
    failed_code,
    failure,
    finish_reason_of,
    finish_status,
    function_call_id,
    function_call_item,
    message_id,
    message_item,
    message_item_text,
    new_call_id,
    output_text_part,
    read_usage,
    reasoning_id,
    reasoning_item,
    reasoning_item_text,
    response_id_for,
    response_object,
    usage_object,
)

# =============================================================================================
# Client side: canonical events -> Responses SSE frames
# =============================================================================================


@dataclass(slots=True)
class _Item:
    """One output item being streamed."""

    kind: str  # "reasoning" | "message" | "function_call"
    output_index: int
    item_id: str
    parts: list[str] = field(default_factory=list)  # text or argument fragments
    call_id: str = ""
    name: str = ""
    status: str = "in_progress"  # set when the item is closed

    @property
    def done(self) -> bool:
        return self.status != "in_progress"

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ResponsesStreamEncoder:
    """One streamed Response: canonical events in, Responses SSE frames out."""

    def __init__(self, ctx: ResponseContext, *, clock: Callable[[], float] = time.time) -> None:
        self._ctx = ctx
        self._response_id = response_id_for(ctx)
        self._clock = clock
        self._seq = 0
        self._started = False
        self._ended = False
        self._items: list[_Item] = []
        self._reasoning: _Item | None = None
        self._reasoning_count = 0
        self._message: _Item | None = None
        self._calls: dict[int, _Item] = {}  # canonical tool-call index -> item
        self._finish: FinishReason | None = None

    # -- the StreamEncoder protocol -------------------------------------------------------

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress`` (once)."""
        if self._started:
            return []
        self._started = True
        out: list[bytes] = []
        for name in ("response.created", "response.in_progress"):
            self._emit(out, name, response=self._response("in_progress", []))
        return out

    def feed(self, event: StreamEvent) -> list[bytes]:
        """Frames for one canonical event (none after the stream has ended)."""
        out = self.start()
        if self._ended:
            return out
        if isinstance(event, TextDelta):
            if event.text:
                self._close_reasoning(out)
                self._text_delta(out, event.text)
        elif isinstance(event, ThinkingDelta):
            if event.text:
                self._reasoning_delta(out, event.text)
        elif isinstance(event, ToolCallStart):
            self._close_reasoning(out)
            if event.index not in self._calls:
                self._open_call(out, event.index, event.id, event.name)
        elif isinstance(event, ToolCallDelta):
            self._close_reasoning(out)
            item = self._calls.get(event.index) or self._open_call(out, event.index, "", "")
            if event.arguments:
                self._arguments_delta(out, item, event.arguments)
        elif isinstance(event, Finish):
            self._finish = event.reason
        # UsageUpdate: the final usage comes with finish(); ThinkingSignature: no Responses field.
        return out

    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]:
        """Close every open item, then ``response.completed`` / ``response.incomplete`` whose
        usage carries ``cost`` (USD)."""
        return self.complete(usage, {"cost": cost_usd})

    def complete(self, usage: Usage | None, usage_extra: dict[str, Any] | None = None) -> list[bytes]:
        """:meth:`finish` with any ``usage_extra`` (or none) merged into the usage object."""
        out = self.start()
        if self._ended:
            return out
        self._ended = True
        status, incomplete = finish_status(self._finish)
        if not any(item.kind != "reasoning" for item in self._items):
            self._open_message(out)  # a Response always has an answer (possibly empty)
        item_status = "completed" if status == "completed" else "incomplete"
        for item in self._items:  # already in output_index order
            self._close(out, item, item_status)
        response = self._response(
            status,
            [self._render(item) for item in self._items],
            usage=usage_object(usage, usage_extra),
            incomplete_details=incomplete,
            completed_at=int(self._clock()) if status == "completed" else None,
        )
        self._emit(out, f"response.{status}", response=response)
        return out

    def fail(self, reason: str, message: str) -> list[bytes]:
        """An ``error`` event (code = ``reason`` as given), then ``response.failed`` with the
        partial output and ``error.code`` mapped into OpenAI's enum (see ``failed_code``)."""
        out = self.start()
        if self._ended:
            return out
        self._ended = True
        self._emit(out, "error", code=reason, message=message, param=None)
        for item in self._items:
            if not item.done:
                item.status = "incomplete"  # partial output, kept for the client
        response = self._response(
            "failed",
            [self._render(item) for item in self._items],
            usage=None,
            error={"code": failed_code(reason), "message": message},
        )
        self._emit(out, "response.failed", response=response)
        return out

    # -- reasoning ------------------------------------------------------------------------

    def _reasoning_delta(self, out: list[bytes], delta: str) -> None:
        item = self._reasoning
        if item is None:
            item = self._add_item(out, "reasoning", reasoning_id(self._response_id, self._reasoning_count))
            self._reasoning_count += 1
            self._reasoning = item
            self._emit(
                out,
                "response.reasoning_summary_part.added",
                item_id=item.item_id,
                output_index=item.output_index,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
        item.parts.append(delta)
        self._emit(
            out,
            "response.reasoning_summary_text.delta",
            item_id=item.item_id,
            output_index=item.output_index,
            summary_index=0,
            delta=delta,
        )

    def _close_reasoning(self, out: list[bytes]) -> None:
        if self._reasoning is not None:
            self._close(out, self._reasoning, "completed")
            self._reasoning = None

    # -- message --------------------------------------------------------------------------

    def _open_message(self, out: list[bytes]) -> _Item:
        item = self._add_item(out, "message", message_id(self._response_id))
        self._message = item
        self._emit(
            out,
            "response.content_part.added",
            item_id=item.item_id,
            output_index=item.output_index,
            content_index=0,
            part=output_text_part(""),
        )
        return item

    def _text_delta(self, out: list[bytes], delta: str) -> None:
        item = self._message or self._open_message(out)
        item.parts.append(delta)
        self._emit(
            out,
            "response.output_text.delta",
            item_id=item.item_id,
            output_index=item.output_index,
            content_index=0,
            delta=delta,
            logprobs=[],
        )

    # -- tool calls -----------------------------------------------------------------------

    def _open_call(self, out: list[bytes], index: int, call_id: str, name: str) -> _Item:
        item_id = function_call_id(self._response_id, len(self._calls))
        item = self._add_item(out, "function_call", item_id, call_id=call_id or new_call_id(), name=name)
        self._calls[index] = item
        return item

    def _arguments_delta(self, out: list[bytes], item: _Item, delta: str) -> None:
        item.parts.append(delta)
        self._emit(
            out,
            "response.function_call_arguments.delta",
            item_id=item.item_id,
            output_index=item.output_index,
            delta=delta,
        )

    # -- shared ---------------------------------------------------------------------------

    def _add_item(
        self, out: list[bytes], kind: str, item_id: str, *, call_id: str = "", name: str = ""
    ) -> _Item:
        item = _Item(kind, len(self._items), item_id, call_id=call_id, name=name)
        self._items.append(item)
        self._emit(out, "response.output_item.added", output_index=item.output_index, item=self._render(item))
        return item

    def _close(self, out: list[bytes], item: _Item, status: str) -> None:
        if item.done:
            return
        # function_call items are always "completed" (see the objects module docstring)
        item.status = "completed" if item.kind == "function_call" else status
        common = {"item_id": item.item_id, "output_index": item.output_index}
        if item.kind == "reasoning":
            text = item.text
            self._emit(out, "response.reasoning_summary_text.done", **common, summary_index=0, text=text)
            self._emit(
                out,
                "response.reasoning_summary_part.done",
                **common,
                summary_index=0,
                part={"type": "summary_text", "text": text},
            )
        elif item.kind == "message":
            text = item.text
            self._emit(out, "response.output_text.done", **common, content_index=0, text=text, logprobs=[])
            self._emit(
                out, "response.content_part.done", **common, content_index=0, part=output_text_part(text)
            )
        else:
            self._emit(out, "response.function_call_arguments.done", **common, arguments=item.text)
        self._emit(out, "response.output_item.done", output_index=item.output_index, item=self._render(item))

    def _render(self, item: _Item) -> dict[str, Any]:
        """The item as an object: an empty shell while open, complete once closed."""
        if item.kind == "reasoning":
            return reasoning_item(item.item_id, item.text if item.done else None)
        if item.kind == "message":
            return message_item(item.item_id, item.text if item.done else None, item.status)
        return function_call_item(
            item.item_id, item.call_id, item.name, item.text if item.done else "", item.status
        )

    def _response(self, status: str, output: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        return response_object(
            response_id=self._response_id,
            model=self._ctx.model,
            created_at=self._ctx.created,
            request=self._ctx.request,
            status=status,
            output=output,
            usage=fields.pop("usage", None),
            **fields,
        )

    def _emit(self, out: list[bytes], name: str, **payload: Any) -> None:
        event = {"type": name, "sequence_number": self._seq, **payload}
        self._seq += 1
        out.append(encode_event(name, orjson.dumps(event)))


# =============================================================================================
# Provider side: Responses SSE events -> canonical events
# =============================================================================================

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})
FAILURE_EVENTS = frozenset({"response.failed", "error"})
TEXT_DELTA_EVENTS = frozenset({"response.output_text.delta", "response.refusal.delta"})
# Thinking delta event -> the field numbering its parts (a new part starts a new paragraph).
THINKING_DELTA_EVENTS: dict[str, str] = {
    "response.reasoning_summary_text.delta": "summary_index",
    "response.reasoning_text.delta": "content_index",
}


class ResponsesStreamDecoder:
    """Reads one provider Responses stream; remembers usage, the finish reason and output size."""

    def __init__(self) -> None:
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None
        self._chars = 0
        self._texts: dict[str, str] = {}  # item id -> text (or thinking) emitted so far
        self._part_index: dict[str, int] = {}  # reasoning item id -> last summary/content index
        self._call_index: dict[str, int] = {}  # function_call item id -> canonical index
        self._call_at: dict[int, int] = {}  # output_index -> canonical index
        self._arguments: dict[int, str] = {}  # canonical index -> arguments emitted so far

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._finish

    @property
    def output_chars(self) -> int:
        return self._chars

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]:
        """Canonical events for one provider SSE event."""
        if event.data == "[DONE]":
            return []
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise GatewayError("provider_error", "The provider sent invalid JSON in its stream") from exc
        if not isinstance(payload, dict):
            raise GatewayError("provider_error", "The provider sent a non-object stream event")
        kind = payload.get("type") or event.event or ""
        out: list[StreamEvent] = []
        if kind in TEXT_DELTA_EVENTS:
            self._text(out, str(payload.get("item_id") or ""), str(payload.get("delta") or ""))
        elif kind in THINKING_DELTA_EVENTS:
            self._thinking_delta(out, payload, THINKING_DELTA_EVENTS[kind])
        elif kind == "response.output_item.added":
            self._item_added(out, payload)
        elif kind == "response.function_call_arguments.delta":
            index = self._index_for(payload)
            if index is not None:
                self._arguments_delta(out, index, str(payload.get("delta") or ""))
        elif kind == "response.function_call_arguments.done":
            index = self._index_for(payload)
            if index is not None:
                self._reconcile_arguments(out, index, str(payload.get("arguments") or ""))
        elif kind == "response.output_item.done":
            item = payload.get("item")
            if isinstance(item, dict):
                self._reconcile(out, item, payload.get("output_index"))
        elif kind in TERMINAL_EVENTS:
            self._terminal(out, payload.get("response") or {})
        elif kind in FAILURE_EVENTS:
            raise _stream_failure(kind, payload)
        return out

    # -- text and thinking ----------------------------------------------------------------

    def _text(self, out: list[StreamEvent], item_id: str, delta: str) -> None:
        if not delta:
            return
        self._texts[item_id] = self._texts.get(item_id, "") + delta
        self._chars += len(delta)
        out.append(TextDelta(delta))

    def _thinking(self, out: list[StreamEvent], item_id: str, delta: str) -> None:
        if not delta:
            return
        self._texts[item_id] = self._texts.get(item_id, "") + delta
        out.append(ThinkingDelta(delta))

    def _thinking_delta(self, out: list[StreamEvent], payload: dict[str, Any], index_field: str) -> None:
        item_id = str(payload.get("item_id") or "")
        part = payload.get(index_field)
        part = part if isinstance(part, int) else 0
        previous = self._part_index.get(item_id)
        if previous is not None and part != previous and self._texts.get(item_id):
            self._thinking(out, item_id, REASONING_SEPARATOR)
        self._part_index[item_id] = part
        self._thinking(out, item_id, str(payload.get("delta") or ""))

    # -- tool calls -----------------------------------------------------------------------

    def _item_added(self, out: list[StreamEvent], payload: dict[str, Any]) -> None:
        item = payload.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            index = self._start_call(out, item, payload.get("output_index"))
            self._arguments_delta(out, index, str(item.get("arguments") or ""))

    def _start_call(self, out: list[StreamEvent], item: dict[str, Any], output_index: Any) -> int:
        item_id = str(item.get("id") or item.get("call_id") or f"#{output_index}")
        index = self._call_index.get(item_id)
        if index is None:
            index = len(self._call_index)
            self._call_index[item_id] = index
            self._arguments[index] = ""
            out.append(
                ToolCallStart(
                    index=index,
                    id=str(item.get("call_id") or item.get("id") or new_call_id()),
                    name=str(item.get("name") or ""),
                )
            )
        if isinstance(output_index, int):
            self._call_at[output_index] = index
        return index

    def _index_for(self, payload: dict[str, Any]) -> int | None:
        index = self._call_index.get(str(payload.get("item_id") or ""))
        if index is None:
            index = self._call_at.get(payload.get("output_index"))  # type: ignore[arg-type]
        return index

    def _arguments_delta(self, out: list[StreamEvent], index: int, delta: str) -> None:
        if not delta:
            return
        self._arguments[index] += delta
        self._chars += len(delta)
        out.append(ToolCallDelta(index=index, arguments=delta))

    def _reconcile_arguments(self, out: list[StreamEvent], index: int, full: str) -> None:
        seen = self._arguments[index]
        if full.startswith(seen):
            self._arguments_delta(out, index, full[len(seen) :])

    # -- whole items (done events, the terminal response) ----------------------------------

    def _reconcile(self, out: list[StreamEvent], item: dict[str, Any], output_index: Any) -> None:
        """Emit whatever of a finished ``item`` was not streamed as deltas."""
        kind = item.get("type")
        item_id = str(item.get("id") or "")
        if kind == "function_call":
            index = self._start_call(out, item, output_index)
            self._reconcile_arguments(out, index, str(item.get("arguments") or ""))
        elif kind == "message":
            seen = self._seen(item_id)
            full = message_item_text(item)
            if seen is not None and full.startswith(seen):
                self._text(out, item_id, full[len(seen) :])
        elif kind == "reasoning":
            seen = self._seen(item_id)
            full = reasoning_item_text(item)
            if seen is not None and full.startswith(seen):
                self._thinking(out, item_id, full[len(seen) :])

    def _seen(self, item_id: str) -> str | None:
        """Text already emitted for ``item_id``; None when that cannot be told (deltas came
        without item ids), so nothing is emitted twice."""
        if item_id in self._texts:
            return self._texts[item_id]
        return None if self._texts.get("") else ""

    def _terminal(self, out: list[StreamEvent], response: dict[str, Any]) -> None:
        for output_index, item in enumerate(response.get("output") or ()):
            if isinstance(item, dict) and item.get("id"):
                self._reconcile(out, item, output_index)
        self._finish = finish_reason_of(response, bool(self._call_index))
        usage = read_usage(response.get("usage"))
        if usage is not None:
            self._usage = usage
            out.append(UsageUpdate(usage))
        out.append(Finish(self._finish))


def _stream_failure(kind: str, payload: dict[str, Any]) -> GatewayError:
    if kind == "response.failed":
        return failure(payload.get("response") or {"status": "failed"})
    error = payload.get("error")
    message = payload.get("message") or (error.get("message") if isinstance(error, dict) else None)
    return GatewayError("provider_error", str(message or "The provider reported an error in its stream"))
