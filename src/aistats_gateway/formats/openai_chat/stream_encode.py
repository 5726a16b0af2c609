"""Client side: canonical stream events as ``chat.completion.chunk`` frames, as OpenAI frames
them.

* :meth:`ChatStreamEncoder.start` sends the role chunk (``delta: {role: "assistant",
  content: ""}``) at once, so the client has its first byte before the model's first token.
* Each event becomes one chunk immediately: TextDelta → ``delta.content``, ThinkingDelta →
  ``delta.reasoning_content`` (the vLLM/DeepSeek convention), ToolCallStart → a ``tool_calls``
  entry with ``id``, ``type``, ``function.name`` and empty ``arguments``, ToolCallDelta → the
  ``arguments`` fragment at the same ``index``, Finish → an empty delta with
  ``finish_reason``. Signatures and usage updates give no chunk.
* With ``ctx.wants_usage`` (``stream_options.include_usage``) every chunk carries
  ``usage: null`` and :meth:`finish` sends the usage chunk (``choices: []``, ``usage.cost``)
  before ``data: [DONE]``.
* :meth:`fail` sends ``data: {"error": {message, type, code, param}}``, the shape OpenAI and the
  gateway's chat passthrough use, which the OpenAI SDKs raise as an APIError.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...canonical import (
    Finish,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from ..base import ResponseContext
from ..sse import DONE_FRAME, encode_data
from .maps import FINISH_TO_CHAT, usage_to_chat


class ChatStreamEncoder:
    """Turns canonical events into chat chunks for one generation."""

    def __init__(self, ctx: ResponseContext) -> None:
        self._ctx = ctx
        self._started = False
        self._finished = False
        self._made_calls = False

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._ctx.generation_id,
            "object": "chat.completion.chunk",
            "created": self._ctx.created,
            "model": self._ctx.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self._ctx.wants_usage:
            chunk["usage"] = None
        return encode_data(orjson.dumps(chunk))

    def start(self) -> list[bytes]:
        """The role chunk (once)."""
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, event: StreamEvent) -> list[bytes]:
        """The chunk for one canonical event (none for signatures and usage updates)."""
        frames = self.start()
        if isinstance(event, TextDelta):
            if event.text:
                frames.append(self._chunk({"content": event.text}))
        elif isinstance(event, ThinkingDelta):
            if event.text:
                frames.append(self._chunk({"reasoning_content": event.text}))
        elif isinstance(event, ToolCallStart):
            self._made_calls = True
            call = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            frames.append(self._chunk({"tool_calls": [call]}))
        elif isinstance(event, ToolCallDelta):
            if event.arguments:
                call = {"index": event.index, "function": {"arguments": event.arguments}}
                frames.append(self._chunk({"tool_calls": [call]}))
        elif isinstance(event, Finish) and not self._finished:
            self._finished = True
            frames.append(self._chunk({}, FINISH_TO_CHAT[event.reason]))
        return frames

    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]:
        """The finish chunk if none came, the usage chunk (when asked for), then ``[DONE]``."""
        frames = self.start()
        if not self._finished:
            frames.extend(self.feed(Finish("tool_calls" if self._made_calls else "stop")))
        if self._ctx.wants_usage:
            chunk = {
                "id": self._ctx.generation_id,
                "object": "chat.completion.chunk",
                "created": self._ctx.created,
                "model": self._ctx.model,
                "system_fingerprint": None,
                "choices": [],
                "usage": usage_to_chat(usage, cost_usd),
            }
            frames.append(encode_data(orjson.dumps(chunk)))
        frames.append(DONE_FRAME)
        return frames

    def fail(self, reason: str, message: str) -> list[bytes]:
        """The in-stream error chunk."""
        error = {"message": message, "type": reason, "code": reason, "param": None}
        return [encode_data(orjson.dumps({"error": error}))]
