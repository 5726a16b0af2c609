"""Messages → an Anthropic provider: passthrough with ``model``/``id`` rewritten and the cost added."""

from __future__ import annotations

from typing import Any

import orjson

from ...api.errors import ANTHROPIC_TYPES, GatewayError
from ...canonical import Usage
from ...formats.base import ResponseContext, Target
from ...formats.sse import ServerSentEvent, encode_event
from ...ids import derive
from .base import Completed, StreamTranslator, json_object, usage_with_cost


def anthropic_error_frame(error: GatewayError) -> bytes:
    """An in-stream ``error`` event in Anthropic's shape."""
    body = {"type": "error", "error": {"type": ANTHROPIC_TYPES[error.reason], "message": error.message}}
    return encode_event("error", orjson.dumps(body))


class MessagesPassthrough:
    upstream_format = "messages"

    def upstream_body(self, body: dict[str, Any], target: Target, stream: bool) -> bytes:
        return orjson.dumps({**body, "model": target.model})

    def read(self, upstream: bytes, ctx: ResponseContext) -> Completed:
        payload = json_object(upstream, "message")
        return Completed(payload, Usage.from_anthropic(payload.get("usage")), payload.get("stop_reason"))

    def finalize(self, completed: Completed, ctx: ResponseContext, cost_usd: float) -> bytes:
        payload = completed.payload
        payload["id"] = derive(ctx.generation_id, "msg_")
        payload["model"] = ctx.model
        payload["usage"] = usage_with_cost(
            payload.get("usage"), (completed.usage or Usage()).to_anthropic(), cost_usd
        )
        return orjson.dumps(payload)

    def translator(self, ctx: ResponseContext) -> StreamTranslator:
        return MessagesStreamPassthrough(ctx)


class MessagesStreamPassthrough:
    """Content events pass untouched; ``message_delta`` and ``message_stop`` are held for the cost."""

    def __init__(self, ctx: ResponseContext) -> None:
        self._ctx = ctx
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._deltas: list[str] = []  # raw content_block_delta events, parsed only if needed
        self._start_usage: dict[str, Any] = {}
        self._delta: dict[str, Any] | None = None

    def start(self) -> list[bytes]:
        return []

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        name = event.event or "message"
        if name == "message_start":
            payload = json_object(event.data, "message_start event")
            message = payload.get("message") or {}
            message["id"] = derive(self._ctx.generation_id, "msg_")
            message["model"] = self._ctx.model
            self._start_usage = message.get("usage") or {}
            self.usage = Usage.from_anthropic(self._start_usage)
            return [encode_event(name, orjson.dumps(payload))]
        if name == "message_delta":
            self._delta = json_object(event.data, "message_delta event")
            self.finish_reason = (self._delta.get("delta") or {}).get("stop_reason")
            # message_delta usage is cumulative and may omit the input counts of message_start.
            self.usage = Usage.from_anthropic({**self._start_usage, **(self._delta.get("usage") or {})})
            return []
        if name == "message_stop":
            return []
        if name == "content_block_delta":
            self._deltas.append(event.data)
        if name == "error":
            payload = json_object(event.data, "error event")
            message = (payload.get("error") or {}).get("message") or "The provider reported an error"
            raise GatewayError("provider_error", str(message))
        return [encode_event(name, event.data.encode())]

    def generated_text(self) -> str:
        pieces = []
        for data in self._deltas:
            delta = json_object(data, "content_block_delta event").get("delta") or {}
            pieces.append(str(delta.get("text") or delta.get("partial_json") or delta.get("thinking") or ""))
        return "".join(pieces)

    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]:
        if self._delta is None:
            raise GatewayError("provider_error", "The provider's stream ended before the message completed")
        self._delta["usage"] = {**usage.to_anthropic(), **(self._delta.get("usage") or {}), "cost": cost_usd}
        return [
            encode_event("message_delta", orjson.dumps(self._delta)),
            encode_event("message_stop", b'{"type":"message_stop"}'),
        ]

    def fail(self, error: GatewayError) -> list[bytes]:
        return [anthropic_error_frame(error)]
