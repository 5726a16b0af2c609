"""Responses → an OpenAI Responses provider: passthrough; only events carrying the response change."""

from __future__ import annotations

from typing import Any

import orjson

from ...api.errors import GatewayError
from ...canonical import Usage
from ...formats.base import ResponseContext, Target
from ...formats.sse import ServerSentEvent, encode_event
from ...ids import derive
from .base import Completed, StreamTranslator, json_object, stream_error_payload, usage_with_cost

_RESPONSE_CARRYING_EVENTS = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _responses_finish_reason(response: dict[str, Any]) -> str | None:
    details = response.get("incomplete_details") or {}
    return details.get("reason") or response.get("status")


class ResponsesPassthrough:
    upstream_format = "responses"

    def upstream_body(self, body: dict[str, Any], target: Target, stream: bool) -> bytes:
        return orjson.dumps({**body, "model": target.model})

    def read(self, upstream: bytes, ctx: ResponseContext) -> Completed:
        payload = json_object(upstream, "response")
        return Completed(
            payload, Usage.from_openai_responses(payload.get("usage")), _responses_finish_reason(payload)
        )

    def finalize(self, completed: Completed, ctx: ResponseContext, cost_usd: float) -> bytes:
        payload = completed.payload
        payload["id"] = derive(ctx.generation_id, "resp_")
        payload["model"] = ctx.model
        payload["usage"] = usage_with_cost(
            payload.get("usage"), (completed.usage or Usage()).to_openai_responses(), cost_usd
        )
        return orjson.dumps(payload)

    def translator(self, ctx: ResponseContext) -> StreamTranslator:
        return ResponsesStreamPassthrough(ctx)


class ResponsesStreamPassthrough:
    """Passes events through untouched but those carrying the response object; holds the last."""

    def __init__(self, ctx: ResponseContext) -> None:
        self._ctx = ctx
        self._response_id = derive(ctx.generation_id, "resp_")
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._deltas: list[str] = []  # raw delta events, parsed only if tokens must be counted
        self._terminal: tuple[str, dict[str, Any]] | None = None
        self._last_sequence = -1

    def start(self) -> list[bytes]:
        return []

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        name = event.event
        if name not in _RESPONSE_CARRYING_EVENTS:
            if name == "error":
                payload = json_object(event.data, "error event")
                raise GatewayError(
                    "provider_error", str(payload.get("message") or "The provider reported an error")
                )
            self._last_sequence += 1
            if name and name.endswith(".delta"):
                self._deltas.append(event.data)
            return [encode_event(name or "message", event.data.encode())]
        payload = json_object(event.data, f"{name} event")
        self._last_sequence = int(payload.get("sequence_number", self._last_sequence + 1))
        response = payload.get("response") or {}
        response["id"] = self._response_id
        response["model"] = self._ctx.model
        if name in _TERMINAL_EVENTS:
            self.usage = Usage.from_openai_responses(response.get("usage"))
            self.finish_reason = _responses_finish_reason(response)
            self._terminal = (name, payload)
            return []
        return [encode_event(name, orjson.dumps(payload))]

    def generated_text(self) -> str:
        return "".join(str(json_object(data, "delta event").get("delta") or "") for data in self._deltas)

    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]:
        if self._terminal is None:
            raise GatewayError("provider_error", "The provider's stream ended before the response completed")
        name, payload = self._terminal
        response = payload["response"]
        response["usage"] = usage_with_cost(response.get("usage"), usage.to_openai_responses(), cost_usd)
        return [encode_event(name, orjson.dumps(payload))]

    def fail(self, error: GatewayError) -> list[bytes]:
        self._last_sequence += 1
        body = {"type": "error", "sequence_number": self._last_sequence, **stream_error_payload(error)}
        return [encode_event("error", orjson.dumps(body))]
