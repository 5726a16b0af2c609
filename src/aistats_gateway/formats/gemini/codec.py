"""The Gemini ``generateContent`` codec: provider side only.

The gateway has no Gemini-format surface, so the client-side methods refuse with a 400 that
points at the surfaces that exist.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ...api.errors import GatewayError
from ...canonical import Request, Response
from ..base import ResponseContext, Target
from .request import encode_request
from .response import decode_response
from .stream import GeminiStreamDecoder

NO_SURFACE_MESSAGE = (
    "The gateway has no Gemini-format surface; call /v1/chat/completions, /v1/responses or /v1/messages"
)


def _no_surface() -> NoReturn:
    raise GatewayError("validation_error", NO_SURFACE_MESSAGE)


class GeminiCodec:
    """Canonical ⇄ Gemini ``generateContent`` (see :mod:`.request`, :mod:`.response`, :mod:`.stream`)."""

    name = "gemini"

    def decode_request(self, body: dict[str, Any]) -> Request:
        """Not served: raises ``validation_error`` (no Gemini-format surface)."""
        _no_surface()

    def encode_response(self, response: Response, ctx: ResponseContext, cost_usd: float) -> dict[str, Any]:
        """Not served: raises ``validation_error`` (no Gemini-format surface)."""
        _no_surface()

    def stream_encoder(self, ctx: ResponseContext) -> NoReturn:
        """Not served: raises ``validation_error`` (no Gemini-format surface)."""
        _no_surface()

    def encode_request(self, request: Request, target: Target) -> dict[str, Any]:
        """The ``generateContent`` body; the adapter puts ``target.model`` in the URL."""
        return encode_request(request, target)

    def decode_response(self, body: dict[str, Any]) -> Response:
        """A whole ``GenerateContentResponse`` as a canonical Response."""
        return decode_response(body)

    def stream_decoder(self) -> GeminiStreamDecoder:
        """A decoder for one ``streamGenerateContent?alt=sse`` stream."""
        return GeminiStreamDecoder()


CODEC = GeminiCodec()
