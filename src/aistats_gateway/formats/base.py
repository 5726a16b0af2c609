"""What a wire-format codec offers: the two directions of requests, responses and streams.

A codec for format F can be used on the client side (F is the surface the client called) and on
the provider side (F is what the provider speaks):

client side:   decode_request(body)            -> canonical Request
               encode_response(Response, ctx)   -> body in F
               stream_encoder(ctx)              -> canonical events -> F's SSE frames
provider side: encode_request(Request, target)  -> body in F for the provider
               decode_response(body)            -> canonical Response
               stream_decoder()                 -> F's SSE events -> canonical events

Errors: a request the codec cannot express raises ``invalid(...)`` (HTTP 400) naming the
parameter and, on the provider side, the provider (``target.provider``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..canonical import FinishReason, Request, Response, StreamEvent, Usage
from .sse import ServerSentEvent


@dataclass(frozen=True, slots=True)
class Target:
    """Where an encoded request goes: the provider's configured name, its own model id, and the
    catalog's max output tokens (the default when a format requires ``max_tokens``)."""

    provider: str
    model: str
    max_output_tokens: int = 4096


@dataclass(frozen=True, slots=True)
class ResponseContext:
    """What a client-side encoder needs besides the answer itself."""

    generation_id: str  # gen_<ULID>; each format derives its body id from it
    model: str  # the gateway model id the client asked for (echoed as ``model``)
    created: int  # unix seconds
    request: dict[str, Any]  # the client's parsed body (for fields a format echoes back)
    wants_usage: bool = True  # chat: stream_options.include_usage


class StreamDecoder(Protocol):
    """Provider SSE events in, canonical events out; remembers usage and the finish reason."""

    @property
    def usage(self) -> Usage | None: ...
    @property
    def finish_reason(self) -> FinishReason | None: ...
    @property
    def output_chars(self) -> int: ...

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]:
        """Decode one SSE event; raise GatewayError("provider_error") for an in-stream error."""
        ...


class StreamEncoder(Protocol):
    """Canonical events in, client SSE frames (bytes) out."""

    def start(self) -> list[bytes]:
        """Frames sent before the first event (e.g. Responses' response.created)."""
        ...

    def feed(self, event: StreamEvent) -> list[bytes]: ...

    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]:
        """Close open blocks and end the stream; the final frame carries usage and ``cost``."""
        ...

    def fail(self, reason: str, message: str) -> list[bytes]:
        """The format's in-stream error event (the stream has started; no HTTP status left)."""
        ...


class Codec(Protocol):
    """One wire format (``name``: "chat", "responses", "messages" or "gemini")."""

    name: str

    def decode_request(self, body: dict[str, Any]) -> Request: ...
    def encode_response(
        self, response: Response, ctx: ResponseContext, cost_usd: float
    ) -> dict[str, Any]: ...
    def stream_encoder(self, ctx: ResponseContext) -> StreamEncoder: ...

    def encode_request(self, request: Request, target: Target) -> dict[str, Any]: ...
    def decode_response(self, body: dict[str, Any]) -> Response: ...
    def stream_decoder(self) -> StreamDecoder: ...
