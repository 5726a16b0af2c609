"""The Chat Completions codec: the :class:`~aistats_gateway.formats.base.Codec` for format
"chat", assembled from this package's modules."""

from __future__ import annotations

from typing import Any

from ...canonical import Request, Response
from ..base import ResponseContext, Target
from .maps import FORMAT
from .request_decode import decode_request
from .request_encode import encode_request
from .response import decode_response, encode_response
from .stream_decode import ChatStreamDecoder
from .stream_encode import ChatStreamEncoder


class ChatCodec:
    """OpenAI Chat Completions, both as a client surface and as a provider format.

    ``max_tokens_param`` names the output limit sent to providers: ``max_tokens`` for
    OpenAI-compatible servers, ``max_completion_tokens`` for OpenAI (its reasoning models
    refuse ``max_tokens``).
    """

    name = FORMAT

    def __init__(self, max_tokens_param: str = "max_tokens") -> None:
        self.max_tokens_param = max_tokens_param

    # client side
    def decode_request(self, body: dict[str, Any]) -> Request:
        return decode_request(body)

    def encode_response(self, response: Response, ctx: ResponseContext, cost_usd: float) -> dict[str, Any]:
        return encode_response(response, ctx, cost_usd)

    def stream_encoder(self, ctx: ResponseContext) -> ChatStreamEncoder:
        return ChatStreamEncoder(ctx)

    # provider side
    def encode_request(self, request: Request, target: Target) -> dict[str, Any]:
        return encode_request(request, target, self.max_tokens_param)

    def decode_response(self, body: dict[str, Any]) -> Response:
        return decode_response(body)

    def stream_decoder(self) -> ChatStreamDecoder:
        return ChatStreamDecoder()


CODEC = ChatCodec()
"""For OpenAI-compatible servers (vLLM, Ollama, llama.cpp, Groq, Together, xAI…)."""

OPENAI_CODEC = ChatCodec(max_tokens_param="max_completion_tokens")
"""For OpenAI's own chat endpoint."""
