"""How one inbound surface talks to one provider wire format.

An exchange builds the upstream body, turns a whole upstream reply into the client's body,
and makes a stream translator that turns upstream SSE events into client frames one by one.
Same-format pairs are passthrough (only ``model``/``id`` rewritten, cost added); the
Responses → Chat pair translates (for providers that only speak chat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..api.errors import GatewayError
from ..canonical import Usage
from ..formats import openai_responses
from ..formats.sse import DONE_FRAME, ServerSentEvent, encode_data, encode_event
from ..ids import derive


@dataclass(slots=True)
class Context:
    """What an exchange needs to know about the generation it serves."""

    generation_id: str
    model_id: str  # the gateway model id the client asked for
    created: int  # unix seconds
    request: dict[str, Any]  # the client's parsed body
    wants_usage: bool  # chat: stream_options.include_usage was set by the client


@dataclass(slots=True)
class Completed:
    """A whole upstream reply, read: its usage and how it ended. ``finalize`` renders the body."""

    payload: dict[str, Any]
    usage: Usage | None
    finish_reason: str | None
    output_chars: int = 0  # generated text, for an estimate when the provider reports no usage


def chat_output_chars(chunk: dict[str, Any]) -> int:
    """Characters of text and tool arguments in a chat completion or chunk."""
    total = 0
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or choice.get("message") or {}
        total += len(delta.get("content") or "")
        for call in delta.get("tool_calls") or ():
            total += len((call.get("function") or {}).get("arguments") or "")
    return total


class StreamTranslator(Protocol):
    @property
    def usage(self) -> Usage | None: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def output_chars(self) -> int: ...

    def start(self) -> list[bytes]: ...
    def feed(self, event: ServerSentEvent) -> list[bytes]: ...
    def finish(self, cost_usd: float) -> list[bytes]: ...
    def fail(self, error: GatewayError) -> list[bytes]: ...


class Exchange(Protocol):
    upstream_format: str

    def upstream_body(self, body: dict[str, Any], upstream_model: str, stream: bool) -> bytes: ...
    def read(self, upstream: bytes, ctx: Context) -> Completed: ...
    def finalize(self, completed: Completed, ctx: Context, cost_usd: float) -> bytes: ...
    def translator(self, ctx: Context) -> StreamTranslator: ...


def _json_object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise GatewayError("provider_error", f"The provider sent invalid JSON in its {what}") from exc
    if not isinstance(value, dict):
        raise GatewayError("provider_error", f"The provider sent a non-object {what}")
    return value


def usage_with_cost(
    upstream: dict[str, Any] | None, fallback: dict[str, Any], cost_usd: float
) -> dict[str, Any]:
    """The provider's usage object as sent (else ``fallback``) plus the gateway's ``cost`` in USD."""
    return {**(upstream or fallback), "cost": cost_usd}


def stream_error_payload(error: GatewayError) -> dict[str, Any]:
    """The ``error`` object sent inside a stream (OpenAI shape plus the gateway's reason)."""
    return {"message": error.message, "type": error.reason, "code": error.code or error.reason, "param": None}


# --- Chat Completions → OpenAI-compatible chat (passthrough) --------------------------------


class ChatPassthrough:
    upstream_format = "chat"

    def upstream_body(self, body: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
        upstream = {**body, "model": upstream_model}
        if stream:
            # Always ask for usage: streams are billed even when the client did not ask for it.
            upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(upstream)

    def read(self, upstream: bytes, ctx: Context) -> Completed:
        payload = _json_object(upstream, "chat completion")
        choices = payload.get("choices") or [{}]
        return Completed(
            payload, Usage.from_openai_chat(payload.get("usage")), choices[0].get("finish_reason")
        )

    def finalize(self, completed: Completed, ctx: Context, cost_usd: float) -> bytes:
        payload = completed.payload
        payload["id"] = ctx.generation_id
        payload["model"] = ctx.model_id
        payload["usage"] = usage_with_cost(
            payload.get("usage"), (completed.usage or Usage()).to_openai_chat(), cost_usd
        )
        return orjson.dumps(payload)

    def translator(self, ctx: Context) -> StreamTranslator:
        return ChatStreamPassthrough(ctx)


class ChatStreamPassthrough:
    """Rewrites ``id``/``model`` per chunk; holds the usage chunk to add the cost at the end."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.output_chars = 0
        self._usage_chunk: dict[str, Any] | None = None

    def start(self) -> list[bytes]:
        return []

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        if event.data == "[DONE]":
            return []
        chunk = _json_object(event.data, "stream chunk")
        if "error" in chunk and "choices" not in chunk:
            raise GatewayError("provider_error", str((chunk["error"] or {}).get("message") or chunk["error"]))
        chunk["id"] = self._ctx.generation_id
        chunk["model"] = self._ctx.model_id
        self.output_chars += chat_output_chars(chunk)
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

    def finish(self, cost_usd: float) -> list[bytes]:
        frames = []
        if self._ctx.wants_usage:
            chunk = self._usage_chunk or {
                "id": self._ctx.generation_id,
                "object": "chat.completion.chunk",
                "created": self._ctx.created,
                "model": self._ctx.model_id,
                "choices": [],
            }
            chunk["usage"] = usage_with_cost(
                chunk.get("usage"), (self.usage or Usage()).to_openai_chat(), cost_usd
            )
            frames.append(encode_data(orjson.dumps(chunk)))
        frames.append(DONE_FRAME)
        return frames

    def fail(self, error: GatewayError) -> list[bytes]:
        return [encode_data(orjson.dumps({"error": stream_error_payload(error)}))]


# --- Responses → OpenAI Responses (passthrough) ----------------------------------------------

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

    def upstream_body(self, body: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
        return orjson.dumps({**body, "model": upstream_model})

    def read(self, upstream: bytes, ctx: Context) -> Completed:
        payload = _json_object(upstream, "response")
        return Completed(
            payload, Usage.from_openai_responses(payload.get("usage")), _responses_finish_reason(payload)
        )

    def finalize(self, completed: Completed, ctx: Context, cost_usd: float) -> bytes:
        payload = completed.payload
        payload["id"] = derive(ctx.generation_id, "resp_")
        payload["model"] = ctx.model_id
        payload["usage"] = usage_with_cost(
            payload.get("usage"), (completed.usage or Usage()).to_openai_responses(), cost_usd
        )
        return orjson.dumps(payload)

    def translator(self, ctx: Context) -> StreamTranslator:
        return ResponsesStreamPassthrough(ctx)


class ResponsesStreamPassthrough:
    """Passes events through untouched but those carrying the response object; holds the last."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._response_id = derive(ctx.generation_id, "resp_")
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.output_chars = 0  # OpenAI always reports usage in response.completed
        self._terminal: tuple[str, dict[str, Any]] | None = None
        self._last_sequence = -1

    def start(self) -> list[bytes]:
        return []

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        name = event.event
        if name not in _RESPONSE_CARRYING_EVENTS:
            if name == "error":
                payload = _json_object(event.data, "error event")
                raise GatewayError(
                    "provider_error", str(payload.get("message") or "The provider reported an error")
                )
            self._last_sequence += 1
            return [encode_event(name or "message", event.data.encode())]
        payload = _json_object(event.data, f"{name} event")
        self._last_sequence = int(payload.get("sequence_number", self._last_sequence + 1))
        response = payload.get("response") or {}
        response["id"] = self._response_id
        response["model"] = self._ctx.model_id
        if name in _TERMINAL_EVENTS:
            self.usage = Usage.from_openai_responses(response.get("usage"))
            self.finish_reason = _responses_finish_reason(response)
            self._terminal = (name, payload)
            return []
        return [encode_event(name, orjson.dumps(payload))]

    def finish(self, cost_usd: float) -> list[bytes]:
        if self._terminal is None:
            raise GatewayError("provider_error", "The provider's stream ended before the response completed")
        name, payload = self._terminal
        response = payload["response"]
        response["usage"] = usage_with_cost(
            response.get("usage"), (self.usage or Usage()).to_openai_responses(), cost_usd
        )
        return [encode_event(name, orjson.dumps(payload))]

    def fail(self, error: GatewayError) -> list[bytes]:
        self._last_sequence += 1
        body = {"type": "error", "sequence_number": self._last_sequence, **stream_error_payload(error)}
        return [encode_event("error", orjson.dumps(body))]


# --- Responses → Chat Completions (translation) ----------------------------------------------


class ResponsesViaChat:
    upstream_format = "chat"

    def upstream_body(self, body: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
        return orjson.dumps(openai_responses.responses_request_to_chat(body, upstream_model=upstream_model))

    def read(self, upstream: bytes, ctx: Context) -> Completed:
        chat = _json_object(upstream, "chat completion")
        choices = chat.get("choices") or [{}]
        return Completed(
            chat,
            Usage.from_openai_chat(chat.get("usage")),
            choices[0].get("finish_reason"),
            chat_output_chars(chat),
        )

    def finalize(self, completed: Completed, ctx: Context, cost_usd: float) -> bytes:
        response = openai_responses.chat_response_to_responses(
            completed.payload,
            response_id=derive(ctx.generation_id, "resp_"),
            model=ctx.model_id,
            created_at=ctx.created,
            request=ctx.request,
        )
        response["usage"] = {**(response.get("usage") or {}), "cost": cost_usd}
        return orjson.dumps(response)

    def translator(self, ctx: Context) -> StreamTranslator:
        return ResponsesStreamViaChat(ctx)


class ResponsesStreamViaChat:
    """Feeds chat chunks to the Responses event builder."""

    def __init__(self, ctx: Context) -> None:
        self._builder = openai_responses.ChatStreamToResponses(
            response_id=derive(ctx.generation_id, "resp_"),
            model=ctx.model_id,
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
        chunk = _json_object(event.data, "stream chunk")
        if "error" in chunk and "choices" not in chunk:
            raise GatewayError("provider_error", str((chunk["error"] or {}).get("message") or chunk["error"]))
        self.output_chars += chat_output_chars(chunk)
        return self._builder.feed(chunk)

    def finish(self, cost_usd: float) -> list[bytes]:
        return self._builder.finish(usage_extra={"cost": cost_usd})

    def fail(self, error: GatewayError) -> list[bytes]:
        return self._builder.fail(code=error.code or error.reason, message=error.message)


CHAT_PASSTHROUGH = ChatPassthrough()
RESPONSES_PASSTHROUGH = ResponsesPassthrough()
RESPONSES_VIA_CHAT = ResponsesViaChat()


def choose_exchange(surface: str, native_formats: frozenset[str]) -> Exchange:
    """The exchange for an inbound ``surface`` and a provider speaking ``native_formats``."""
    if surface in native_formats:
        return CHAT_PASSTHROUGH if surface == "chat" else RESPONSES_PASSTHROUGH
    if surface == "responses" and "chat" in native_formats:
        return RESPONSES_VIA_CHAT
    raise GatewayError(
        "no_provider_available",
        f"No adapter translates the {surface} format for a provider speaking {sorted(native_formats)}",
    )
