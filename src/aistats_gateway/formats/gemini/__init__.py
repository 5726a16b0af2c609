"""Google Gemini ``generateContent`` ⇄ canonical types (provider side; no Gemini surface).

``CODEC`` is the :class:`~aistats_gateway.formats.base.Codec` for format ``"gemini"``.
Provider error bodies (``{"error": {"code", "message", "status"}}``) need nothing of their own:
:func:`aistats_gateway.pipeline.upstream_errors.provider_message` reads ``error.message``.
"""

from .codec import CODEC, NO_SURFACE_MESSAGE, GeminiCodec
from .request import encode_request
from .response import decode_response
from .stream import GeminiStreamDecoder

__all__ = [
    "CODEC",
    "NO_SURFACE_MESSAGE",
    "GeminiCodec",
    "GeminiStreamDecoder",
    "decode_response",
    "encode_request",
]
