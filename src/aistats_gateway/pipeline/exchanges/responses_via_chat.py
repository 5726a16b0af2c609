"""Responses → a chat-only provider through the legacy Responses⇄Chat translator."""

from __future__ import annotations

from typing import Any

import orjson

from ...api.errors import GatewayError
from ...canonical import Usage
from ...formats import openai_responses
from ...formats.base import ResponseContext, Target
from ...formats.sse import ServerSentEvent
from ...ids import derive
from .base import Completed, StreamTranslator, json_object
from .chat_passthrough import chat_output_chars


class ResponsesViaChat:
    upstream_format = "chat"

    def upstream_body(self, body: dict[str, Any], target: Target, stream: bool) -> bytes:
        return orjson.dumps(openai_responses.responses_request_to_chat(body, upstream_model=target.model))

    def read(self, upstream: bytes, ctx: ResponseContext) -> Completed:
        chat = json_object(upstream, "chat completion")
        choices = chat.get("choices") or [{}]
        return Completed(
            chat,
            Usage.from_openai_chat(chat.get("usage")),
            choices[0].get("finish_reason"),
            chat_output_chars(chat),
        )

    def finalize(self, completed: Completed, ctx: ResponseContext, cost_usd: float) -> bytes:
        response = openai_responses.chat_response_to_responses(
            completed.payload,
            response_id=derive(ctx.generation_id, "resp_"),
            model=ctx.model,
            created_at=ctx.created,
            request=ctx.request,
        )
        response["usage"] = {**(response.get("usage") or {}), "cost": cost_usd}
        return orjson.dumps(response)

    def translator(self, ctx: ResponseContext) -> StreamTranslator:
        return ResponsesStreamViaChat(ctx)


class ResponsesStreamViaChat:
    """Feeds chat chunks to the Responses event builder."""

    def __init__(self, ctx: ResponseContext) -> None:
        self._builder = openai_responses.ChatStreamToResponses(
            response_id=derive(ctx.generation_id, "resp_"),
            model=ctx.model,
            created_at=ctx.created,
            request=ctx.request,
        )
        self.output_chars = 0

    @property
    def usage(self) -> Usage | None:
        return self._builder.usage

    @property
    def finish_reason(self) -> str | None:
        return self._builder.finish_reason

    def start(self) -> list[bytes]:
        return self._builder.start()

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        if event.data == "[DONE]":
            return []
        chunk = json_object(event.data, "stream chunk")
        if "error" in chunk and "choices" not in chunk:
            raise GatewayError("provider_error", str((chunk["error"] or {}).get("message") or chunk["error"]))
        self.output_chars += chat_output_chars(chunk)
        return self._builder.feed(chunk)

    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]:
        return self._builder.finish(usage_extra={"cost": cost_usd})

    def fail(self, error: GatewayError) -> list[bytes]:
        return self._builder.fail(code=error.code or error.reason, message=error.message)
