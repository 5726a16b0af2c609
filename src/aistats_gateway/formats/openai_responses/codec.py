"""The OpenAI Responses codec: format name ``"responses"`` (see :mod:`aistats_gateway.formats.base`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...canonical import Request, Response
from ..base import ResponseContext, Target
from .objects import decode_response, encode_response
from .request import decode_request, encode_request
from .stream import ResponsesStreamDecoder, ResponsesStreamEncoder


class ResponsesCodec:
    """Requests, responses and streams in the OpenAI Responses wire format.

    ``clock`` gives ``completed_at`` of finished responses (injectable for tests).
    """

    name = "responses"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    # -- client side ------------------------------------------------------------------------

    def decode_request(self, body: dict[str, Any]) -> Request:
        return decode_request(body)

    def encode_response(self, response: Response, ctx: ResponseContext, cost_usd: float) -> dict[str, Any]:
        return encode_response(response, ctx, cost_usd, clock=self._clock)

    def stream_encoder(self, ctx: ResponseContext) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(ctx, clock=self._clock)

    # -- provider side ----------------------------------------------------------------------

    def encode_request(self, request: Request, target: Target) -> dict[str, Any]:
        return encode_request(request, target)

    def decode_response(self, body: dict[str, Any]) -> Response:
        return decode_response(body)

    def stream_decoder(self) -> ResponsesStreamDecoder:
        return ResponsesStreamDecoder()


CODEC = ResponsesCodec()
