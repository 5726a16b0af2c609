"""The Anthropic Messages codec: both sides of the "messages" wire format behind one object."""

from __future__ import annotations

from typing import Any

from ...canonical import Request, Response
from ..base import ResponseContext, Target
from .provider_request import encode_request
from .request import decode_request
from .response import decode_response, encode_response
from .stream_decoder import MessagesStreamDecoder
from .stream_encoder import MessagesStreamEncoder
from .wire import FORMAT_NAME


class AnthropicMessagesCodec:
    """Implements :class:`~aistats_gateway.formats.base.Codec` for Anthropic Messages."""

    name = FORMAT_NAME

    def decode_request(self, body: dict[str, Any]) -> Request:
        """Client body (``POST /v1/messages``) → canonical Request."""
        return decode_request(body)

    def encode_response(self, response: Response, ctx: ResponseContext, cost_usd: float) -> dict[str, Any]:
        """Canonical answer → Anthropic ``message`` (``usage.cost`` in USD)."""
        return encode_response(response, ctx, cost_usd)

    def stream_encoder(self, ctx: ResponseContext) -> MessagesStreamEncoder:
        """Canonical events → Anthropic SSE frames for one client stream."""
        return MessagesStreamEncoder(ctx)

    def encode_request(self, request: Request, target: Target) -> dict[str, Any]:
        """Canonical Request → Anthropic Messages body for ``target``."""
        return encode_request(request, target)

    def decode_response(self, body: dict[str, Any]) -> Response:
        """Anthropic ``message`` → canonical Response."""
        return decode_response(body)

    def stream_decoder(self) -> MessagesStreamDecoder:
        """Anthropic SSE events → canonical events for one upstream stream."""
        return MessagesStreamDecoder()


CODEC = AnthropicMessagesCodec()
