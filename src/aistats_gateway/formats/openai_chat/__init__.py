"""OpenAI Chat Completions ⇄ canonical types (format "chat").

``CODEC`` serves clients of ``/v1/chat/completions`` when the provider speaks another format,
and providers that speak chat (OpenAI-compatible servers) when the client does not;
``OPENAI_CODEC`` is the same for OpenAI itself (``max_completion_tokens``).
"""

from .codec import CODEC, OPENAI_CODEC, ChatCodec
from .stream_decode import ChatStreamDecoder
from .stream_encode import ChatStreamEncoder

__all__ = ["CODEC", "OPENAI_CODEC", "ChatCodec", "ChatStreamDecoder", "ChatStreamEncoder"]
