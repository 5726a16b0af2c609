"""The codec of each wire format, and which one a provider's type needs for a format."""

from __future__ import annotations

from . import anthropic_messages, gemini, openai_chat, openai_responses
from .base import Codec

CODECS: dict[str, Codec] = {
    "chat": openai_chat.CODEC,
    "responses": openai_responses.CODEC,
    "messages": anthropic_messages.CODEC,
    "gemini": gemini.CODEC,
}
# (format, provider type) pairs whose provider needs a variant of the format's codec.
PROVIDER_VARIANTS: dict[tuple[str, str], Codec] = {
    ("chat", "openai"): openai_chat.OPENAI_CODEC,  # OpenAI's reasoning models take max_completion_tokens
}
SURFACE_FORMATS = ("chat", "responses", "messages")


def provider_codec(fmt: str, provider_type: str) -> Codec:
    """The codec that speaks ``fmt`` to a provider of ``provider_type``."""
    return PROVIDER_VARIANTS.get((fmt, provider_type), CODECS[fmt])
