"""Any surface → any provider format, through the canonical types and the two formats' codecs."""

from __future__ import annotations

from typing import Any

import orjson

from ...api.errors import GatewayError
from ...canonical import (
    Response,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallPart,
    Usage,
)
from ...formats.base import Codec, ResponseContext, StreamDecoder, StreamEncoder, Target
from ...formats.sse import ServerSentEvent
from .base import Completed, StreamTranslator, json_object


def output_text(response: Response) -> str:
    """Text, thinking and tool arguments of a canonical answer."""
    pieces = []
    for part in response.parts:
        if isinstance(part, TextPart | ThinkingPart):
            pieces.append(part.text)
        elif isinstance(part, ToolCallPart):
            pieces.append(part.arguments)
    return "".join(pieces)


class TranslatingExchange:
    """``surface`` codec on the client side, ``provider`` codec on the upstream side."""

    def __init__(self, surface: Codec, provider: Codec) -> None:
        self._surface = surface
        self._provider = provider
        self.upstream_format = provider.name

    def upstream_body(self, body: dict[str, Any], target: Target, stream: bool) -> bytes:
        request = self._surface.decode_request(body)
        request.stream = stream
        return orjson.dumps(self._provider.encode_request(request, target))

    def read(self, upstream: bytes, ctx: ResponseContext) -> Completed:
        response = self._provider.decode_response(json_object(upstream, "response"))
        return Completed(response, response.usage, response.finish_reason, output_text(response))

    def finalize(self, completed: Completed, ctx: ResponseContext, cost_usd: float) -> bytes:
        response: Response = completed.payload
        if response.usage is None and completed.usage is not None:
            response.usage = completed.usage
        return orjson.dumps(self._surface.encode_response(response, ctx, cost_usd))

    def translator(self, ctx: ResponseContext) -> StreamTranslator:
        return CodecStream(self._provider.stream_decoder(), self._surface.stream_encoder(ctx))


class CodecStream:
    """Provider events → canonical events → client frames, one upstream event at a time."""

    def __init__(self, decoder: StreamDecoder, encoder: StreamEncoder) -> None:
        self._decoder = decoder
        self._encoder = encoder
        self._generated: list[str] = []

    @property
    def usage(self) -> Usage | None:
        return self._decoder.usage

    @property
    def finish_reason(self) -> str | None:
        return self._decoder.finish_reason

    def generated_text(self) -> str:
        return "".join(self._generated)

    def start(self) -> list[bytes]:
        return self._encoder.start()

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        frames: list[bytes] = []
        for canonical_event in self._decoder.feed(event):
            if isinstance(canonical_event, TextDelta | ThinkingDelta):
                self._generated.append(canonical_event.text)
            elif isinstance(canonical_event, ToolCallDelta):
                self._generated.append(canonical_event.arguments)
            frames.extend(self._encoder.feed(canonical_event))
        return frames

    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]:
        return self._encoder.finish(usage, cost_usd)

    def fail(self, error: GatewayError) -> list[bytes]:
        return self._encoder.fail(error.reason, error.message)
