"""Client side: canonical stream events → Anthropic Messages SSE frames.

The event sequence is Anthropic's: ``message_start`` (empty content, zero usage) and ``ping``
first; then for each content block ``content_block_start``, its ``content_block_delta`` events
and ``content_block_stop``; at the end ``message_delta`` (stop reason, final cumulative usage
with ``cost``) and ``message_stop``. Frames are emitted as soon as an event arrives.

Anthropic blocks are strictly sequential, canonical events may interleave. A text or thinking
delta after another kind of block closes that block and opens a new one. Tool calls need care,
because a tool call's arguments cannot be added once its block is closed:

* a new block closes the open ``tool_use`` block only once that tool's arguments are a complete
  JSON value (providers that stream one call after another, the usual case, never wait);
* while the open tool's arguments are incomplete, events for other blocks (another tool's start
  and arguments, text, thinking) are held back, in order, and replayed as soon as the open
  tool's JSON completes (or at the end of the stream) — so no argument fragment is ever lost;
* at the end, held-back events are replayed with every tool block gathering all of its own
  fragments before it closes;
* a fragment for a tool whose block closed with complete JSON can only be whitespace (anything
  else would make the JSON invalid) and is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ...api.errors import ANTHROPIC_TYPES
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
)
from ...ids import derive
from ..base import ResponseContext
from ..sse import encode_event
from .wire import FINISH_TO_STOP, is_complete_json, tool_id, usage_to_wire

BlockKind = Literal["text", "thinking", "tool_use"]

# What content_block_start carries for text and thinking blocks (tool_use: id, name, input {}).
_EMPTY_BLOCKS: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": ""},
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
}


def _frame(name: str, payload: dict[str, Any]) -> bytes:
    return encode_event(name, orjson.dumps(payload))


@dataclass(slots=True)
class _OpenBlock:
    kind: BlockKind
    index: int  # Anthropic content block index
    tool_index: int | None = None  # canonical tool-call index, for tool_use blocks
    arguments: str = ""  # tool arguments so far (to know when they are complete)


class MessagesStreamEncoder:
    """One client stream in the Anthropic Messages format (see the module docstring)."""

    def __init__(self, ctx: ResponseContext) -> None:
        self._ctx = ctx
        self._open: _OpenBlock | None = None
        self._next_index = 0
        self._tools_seen: set[int] = set()
        self._held: list[StreamEvent] = []
        self._finishing = False  # final replay: close tool blocks whether complete or not
        self._reason: FinishReason = "stop"
        self._stop_sequence: str | None = None
        self._done = False

    def start(self) -> list[bytes]:
        """``message_start`` with an empty message, then a ``ping``."""
        message: dict[str, Any] = {
            "id": derive(self._ctx.generation_id, "msg_"),
            "type": "message",
            "role": "assistant",
            "model": self._ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
            },
        }
        return [
            _frame("message_start", {"type": "message_start", "message": message}),
            _frame("ping", {"type": "ping"}),
        ]

    def feed(self, event: StreamEvent) -> list[bytes]:
        """Frames for one canonical event (none while it is held back)."""
        frames: list[bytes] = []
        if not self._done:
            self._handle(event, frames, None)
        return frames

    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]:
        """Replay held-back events, close the open block, then ``message_delta`` + ``message_stop``."""
        if self._done:
            return []
        self._done = True
        self._finishing = True
        frames: list[bytes] = []
        queue, self._held = self._held, []
        while queue:
            self._handle(queue.pop(0), frames, queue)
        self._close(frames, None)
        stop_sequence = self._stop_sequence if self._reason == "stop_sequence" else None
        frames.append(
            _frame(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": FINISH_TO_STOP[self._reason], "stop_sequence": stop_sequence},
                    "usage": usage_to_wire(usage, cost_usd),
                },
            )
        )
        frames.append(_frame("message_stop", {"type": "message_stop"}))
        return frames

    def fail(self, reason: str, message: str) -> list[bytes]:
        """Anthropic's in-stream ``error`` event; the stream ends there."""
        if self._done:
            return []
        self._done = True
        error = {"type": ANTHROPIC_TYPES.get(reason, "api_error"), "message": message}
        return [_frame("error", {"type": "error", "error": error})]

    # --- event handling ------------------------------------------------------------------------

    def _handle(self, event: StreamEvent, frames: list[bytes], upcoming: list[StreamEvent] | None) -> None:
        """``upcoming``: during the final replay, the events still to replay (tool blocks pull
        their own fragments from it before closing)."""
        match event:
            case Finish():
                self._reason, self._stop_sequence = event.reason, event.stop_sequence
            case ToolCallDelta() if self._is_open_tool(event.index):
                self._tool_arguments(event.arguments, frames)
            case _ if self._held:
                self._held.append(event)
            case TextDelta() if event.text:
                if self._enter("text", event, frames, upcoming):
                    self._delta(frames, {"type": "text_delta", "text": event.text})
            case ThinkingDelta() if event.text:
                if self._enter("thinking", event, frames, upcoming):
                    self._delta(frames, {"type": "thinking_delta", "thinking": event.text})
            case ThinkingSignature() if event.signature:
                if self._enter("thinking", event, frames, upcoming):
                    self._delta(frames, {"type": "signature_delta", "signature": event.signature})
            case ToolCallStart() if event.index not in self._tools_seen:
                if self._may_leave(event, upcoming, frames):
                    self._tools_seen.add(event.index)
                    self._open_block("tool_use", frames, event)
            # Usage updates need no frame (finish() gets the final usage); empty deltas and
            # fragments of closed or unknown tool calls carry nothing to send.

    def _is_open_tool(self, index: int) -> bool:
        return self._open is not None and self._open.kind == "tool_use" and self._open.tool_index == index

    def _tool_arguments(self, fragment: str, frames: list[bytes]) -> None:
        if not fragment:
            return
        assert self._open is not None
        self._open.arguments += fragment
        self._delta(frames, {"type": "input_json_delta", "partial_json": fragment})
        if self._held and not self._finishing and is_complete_json(self._open.arguments):
            self._close(frames, None)
            held, self._held = self._held, []
            for event in held:
                self._handle(event, frames, None)

    def _enter(
        self, kind: BlockKind, event: StreamEvent, frames: list[bytes], upcoming: list[StreamEvent] | None
    ) -> bool:
        """Make a ``kind`` block the open one; False when ``event`` had to be held back."""
        if self._open is not None and self._open.kind == kind:
            return True
        if not self._may_leave(event, upcoming, frames):
            return False
        self._open_block(kind, frames, None)
        return True

    def _may_leave(self, event: StreamEvent, upcoming: list[StreamEvent] | None, frames: list[bytes]) -> bool:
        """Close the open block for a new one, unless it is a tool call whose arguments are still
        incomplete: then hold ``event`` back and return False."""
        block = self._open
        if (
            block is not None
            and block.kind == "tool_use"
            and not self._finishing
            and not is_complete_json(block.arguments)
        ):
            self._held.append(event)
            return False
        self._close(frames, upcoming)
        return True

    def _open_block(self, kind: BlockKind, frames: list[bytes], tool: ToolCallStart | None) -> None:
        if tool is None:
            content = _EMPTY_BLOCKS[kind]
        else:
            content = {"type": "tool_use", "id": tool_id(tool.id), "name": tool.name, "input": {}}
        self._open = _OpenBlock(kind, self._next_index, tool.index if tool is not None else None)
        self._next_index += 1
        frames.append(
            _frame(
                "content_block_start",
                {"type": "content_block_start", "index": self._open.index, "content_block": content},
            )
        )

    def _close(self, frames: list[bytes], upcoming: list[StreamEvent] | None) -> None:
        block = self._open
        if block is None:
            return
        if block.kind == "tool_use" and upcoming is not None:
            # Final replay: this tool's later fragments go into its block before it closes.
            rest: list[StreamEvent] = []
            for event in upcoming:
                if isinstance(event, ToolCallDelta) and event.index == block.tool_index:
                    self._tool_arguments(event.arguments, frames)
                else:
                    rest.append(event)
            upcoming[:] = rest
        frames.append(_frame("content_block_stop", {"type": "content_block_stop", "index": block.index}))
        self._open = None

    def _delta(self, frames: list[bytes], delta: dict[str, Any]) -> None:
        assert self._open is not None
        frames.append(
            _frame(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._open.index, "delta": delta},
            )
        )
