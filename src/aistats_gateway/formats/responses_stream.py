"""Translate a Chat Completions stream into a Responses event stream, chunk by chunk.

Each chat chunk is turned into Responses events as soon as it arrives; nothing is held back
beyond the chunk being read, except tool-call argument fragments that come before the tool's
name (an item cannot be announced without it).

Item lifecycle:

* reasoning text (``reasoning_content`` / ``reasoning`` deltas) opens a reasoning item with one
  summary part; it is closed as soon as answer text or a tool call starts. Reasoning that comes
  back later opens a new reasoning item.
* answer text opens the (single) message item and its ``output_text`` part on the first
  non-empty delta; it stays open until :meth:`ChatStreamToResponses.finish`, so text that
  comes between tool calls still lands in it.
* each tool call (by its chat ``index``) gets its own function_call item, opened when its name
  is known and closed at the end. Servers that reuse index 0 for parallel calls (Ollama) are
  recognised by a new call id at that index.

:meth:`~ChatStreamToResponses.finish` closes every open item in ``output_index`` order and
sends ``response.completed`` (or ``response.incomplete``) carrying the same object that
:func:`~aistats_gateway.formats.openai_responses.chat_response_to_responses` would build.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from aistats_gateway.canonical import Usage
from aistats_gateway.formats.responses_objects import (
    finish_status,
    function_call_id,
    function_call_item,
    message_id,
    message_item,
    new_call_id,
    output_text_part,
    reasoning_id,
    reasoning_item,
    reasoning_text,
    response_object,
    usage_object,
)
from aistats_gateway.formats.sse import encode_event

# The codes a Response's `error.code` may take (OpenAI's enum, checked by typed clients).
RESPONSE_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})


def failed_code(code: str) -> str:
    """The ``error.code`` of ``response.failed`` for a gateway error code: the gateway's own
    codes are not in OpenAI's enum, so they become ``server_error`` (the ``error`` event that
    precedes it carries the original)."""
    if code in RESPONSE_ERROR_CODES:
        return code
    return "rate_limit_exceeded" if code == "rate_limit_error" else "server_error"


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


@dataclass(slots=True)
class _ToolSlot:
    """A chat tool call being assembled; ``item`` is None until its name is known."""

    call_id: str = ""
    name: str = ""
    pending: list[str] = field(default_factory=list)  # arguments seen before the name
    item: _Item | None = None


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
        self._response_id = response_id
        self._model = model
        self._created_at = created_at
        self._request = request
        self._clock = clock
        self._seq = 0
        self._started = False
        self._ended = False
        self._items: list[_Item] = []
        self._reasoning: _Item | None = None
        self._reasoning_count = 0
        self._message: _Item | None = None
        self._slots: dict[int, _ToolSlot] = {}
        self._call_count = 0
        self._usage: Usage | None = None
        self._finish_reason: str | None = None

    @property
    def usage(self) -> Usage | None:
        """Usage from the chat stream's usage chunk; None if none was seen."""
        return self._usage

    @property
    def finish_reason(self) -> str | None:
        return self._finish_reason

    # -- public steps ---------------------------------------------------------------------

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``."""
        if self._started:
            return []
        self._started = True
        out: list[bytes] = []
        for name in ("response.created", "response.in_progress"):
            self._emit(out, name, response=self._response("in_progress", []))
        return out

    def feed(self, chunk: dict) -> list[bytes]:
        """Frames for one parsed ``chat.completion.chunk``."""
        out = self.start()
        if self._ended:
            return out
        usage = Usage.from_openai_chat(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not a Responses concept
            delta = choice.get("delta") or {}
            thinking = reasoning_text(delta)
            if thinking:
                self._reasoning_delta(out, thinking)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._close_reasoning(out)
                self._text_delta(out, content)
            for position, call in enumerate(delta.get("tool_calls") or []):
                if isinstance(call, dict):
                    self._close_reasoning(out)
                    self._tool_delta(out, call, position)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return out

    def finish(self, *, usage_extra: dict | None = None) -> list[bytes]:
        """Close every open item, then ``response.completed`` / ``response.incomplete``."""
        out = self.start()
        if self._ended:
            return out
        self._ended = True
        status, incomplete = finish_status(self._finish_reason)
        for slot in self._slots.values():
            if slot.item is None:  # arguments came, a name never did
                self._open_call(out, slot)
        if not any(item.kind != "reasoning" for item in self._items):
            self._open_message(out)  # a Response always has an answer (possibly empty)
        item_status = "completed" if status == "completed" else "incomplete"
        for item in self._items:  # already in output_index order
            self._close(out, item, item_status)
        response = self._response(
            status,
            [self._render(item) for item in self._items],
            usage=usage_object(self._usage, usage_extra),
            incomplete_details=incomplete,
            completed_at=int(self._clock()) if status == "completed" else None,
        )
        self._emit(out, f"response.{status}", response=response)
        return out

    def fail(self, *, code: str, message: str) -> list[bytes]:
        """An ``error`` event (with ``code`` as given), then ``response.failed`` with the partial
        output and ``error.code`` mapped into OpenAI's enum (see :func:`failed_code`)."""
        out = self.start()
        if self._ended:
            return out
        self._ended = True
        self._emit(out, "error", code=code, message=message, param=None)
        for item in self._items:
            if not item.done:
                item.status = "incomplete"  # partial output, kept for the client
        response = self._response(
            "failed",
            [self._render(item) for item in self._items],
            usage=usage_object(self._usage) if self._usage is not None else None,
            error={"code": failed_code(code), "message": message},
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

    def _tool_delta(self, out: list[bytes], call: dict, position: int) -> None:
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
        if slot.item is None:
            if fragment:
                slot.pending.append(fragment)
            if slot.name:
                self._open_call(out, slot)
            return
        if fragment:
            self._arguments_delta(out, slot.item, fragment)

    def _open_call(self, out: list[bytes], slot: _ToolSlot) -> None:
        item_id = function_call_id(self._response_id, self._call_count)
        self._call_count += 1
        slot.call_id = slot.call_id or new_call_id()
        item = self._add_item(out, "function_call", item_id, call_id=slot.call_id, name=slot.name)
        slot.item = item
        if slot.pending:
            self._arguments_delta(out, item, "".join(slot.pending))
            slot.pending.clear()

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
        # function_call items are always "completed" (see responses_objects docstring)
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
            model=self._model,
            created_at=self._created_at,
            request=self._request,
            status=status,
            output=output,
            usage=fields.pop("usage", None),
            **fields,
        )

    def _emit(self, out: list[bytes], name: str, **payload: Any) -> None:
        event = {"type": name, "sequence_number": self._seq, **payload}
        self._seq += 1
        out.append(encode_event(name, orjson.dumps(event)))
