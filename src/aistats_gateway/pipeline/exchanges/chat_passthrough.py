"""Chat Completions → an OpenAI-compatible chat provider: passthrough with ``model``/``id`` rewritten."""

from __future__ import annotations

from typing import Any

import orjson

from ...api.errors import GatewayError
from ...canonical import Usage
from ...formats.base import ResponseContext, Target
from ...formats.sse import DONE_FRAME, ServerSentEvent, encode_data
from .base import Completed, StreamTranslator, json_object, stream_error_payload, usage_with_cost


def chat_output_text(chunk: dict[str, Any]) -> str:
    """Text and tool arguments in a chat completion or chunk."""
    pieces = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or choice.get("message") or {}
        pieces.append(delta.get("content") or "")
        for call in delta.get("tool_calls") or ():
            pieces.append((call.get("function") or {}).get("arguments") or "")
    return "".join(pieces)


class ChatPassthrough:
    upstream_format = "chat"

    def upstream_body(self, body: dict[str, Any], target: Target, stream: bool) -> bytes:
        upstream = {**body, "model": target.model}
        if stream:
            # Always ask for usage: streams are billed even when the client did not ask for it.
            upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(upstream)

    def read(self, upstream: bytes, ctx: ResponseContext) -> Completed:
        payload = json_object(upstream, "chat completion")
        choices = payload.get("choices") or [{}]
        return Completed(
            payload,
            Usage.from_openai_chat(payload.get("usage")),
            choices[0].get("finish_reason"),
            chat_output_text(payload),
        )

    def finalize(self, completed: Completed, ctx: ResponseContext, cost_usd: float) -> bytes:
        payload = completed.payload
        payload["id"] = ctx.generation_id
        payload["model"] = ctx.model
        payload["usage"] = usage_with_cost(
            payload.get("usage"), (completed.usage or Usage()).to_openai_chat(), cost_usd
        )
        return orjson.dumps(payload)

    def translator(self, ctx: ResponseContext) -> StreamTranslator:
        return ChatStreamPassthrough(ctx)


class ChatStreamPassthrough:
    """Rewrites ``id``/``model`` per chunk; holds the usage chunk to add the cost at the end."""

    def __init__(self, ctx: ResponseContext) -> None:
        self._ctx = ctx
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._generated: list[str] = []
        self._usage_chunk: dict[str, Any] | None = None

    def start(self) -> list[bytes]:
        return []

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        if event.data == "[DONE]":
            return []
        chunk = json_object(event.data, "stream chunk")
        if "error" in chunk and "choices" not in chunk:
            raise GatewayError("provider_error", str((chunk["error"] or {}).get("message") or chunk["error"]))
        chunk["id"] = self._ctx.generation_id
        chunk["model"] = self._ctx.model
        self._generated.append(chat_output_text(chunk))
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai_chat(usage)
        choices = chunk.get("choices") or []
        for choice in choices:
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if usage and not choices:
            self._usage_chunk = chunk
            return []
        if not self._ctx.wants_usage:
            chunk.pop("usage", None)
        elif usage:
            # Usage arrived on a content chunk: send the content now, the usage at the end.
            chunk["usage"] = None
            self._usage_chunk = {**chunk, "choices": [], "usage": usage}
        return [encode_data(orjson.dumps(chunk))]

    def generated_text(self) -> str:
        return "".join(self._generated)

    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]:
        frames = []
        if self._ctx.wants_usage:
            chunk = self._usage_chunk or {
                "id": self._ctx.generation_id,
                "object": "chat.completion.chunk",
                "created": self._ctx.created,
                "model": self._ctx.model,
                "choices": [],
            }
            chunk["usage"] = usage_with_cost(chunk.get("usage"), usage.to_openai_chat(), cost_usd)
            frames.append(encode_data(orjson.dumps(chunk)))
        frames.append(DONE_FRAME)
        return frames

    def fail(self, error: GatewayError) -> list[bytes]:
        return [encode_data(orjson.dumps({"error": stream_error_payload(error)}))]
