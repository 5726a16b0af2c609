"""The OpenAI Responses wire format: :data:`CODEC` (format name ``"responses"``).

Modules: :mod:`.request` (request body ⇄ canonical Request), :mod:`.objects` (the Response
object ⇄ canonical Response), :mod:`.stream` (stream encoder and decoder), :mod:`.codec` (the
codec). :mod:`.legacy` keeps the pre-codec Responses ⇄ Chat API that ``pipeline/exchanges.py``
still calls; its three names are re-exported here for it.
"""

from .codec import CODEC, ResponsesCodec
from .legacy import ChatStreamToResponses, chat_response_to_responses, responses_request_to_chat

__all__ = [
    "CODEC",
    "ChatStreamToResponses",
    "ResponsesCodec",
    "chat_response_to_responses",
    "responses_request_to_chat",
]
