"""The OpenAI Responses wire format: :data:`CODEC` (format name ``"responses"``).

Modules: :mod:`.request` (request body ⇄ canonical Request), :mod:`.objects` (the Response
object ⇄ canonical Response), :mod:`.stream` (stream encoder and decoder), :mod:`.codec` (the
codec).
"""

from .codec import CODEC, ResponsesCodec

__all__ = ["CODEC", "ResponsesCodec"]
