"""How one inbound surface talks to one provider wire format.

Same-format pairs are passthrough (only ``model``/``id`` rewritten, usage read, cost added);
every other pair translates through the canonical types with the two formats' codecs.
"""

from __future__ import annotations

from ...api.errors import GatewayError
from .base import Completed, Exchange, StreamTranslator
from .chat_passthrough import ChatPassthrough
from .messages_passthrough import MessagesPassthrough, anthropic_error_frame
from .responses_passthrough import ResponsesPassthrough
from .responses_via_chat import ResponsesViaChat

__all__ = ["Completed", "Exchange", "StreamTranslator", "anthropic_error_frame", "choose_exchange"]

PASSTHROUGH: dict[str, Exchange] = {
    "chat": ChatPassthrough(),
    "responses": ResponsesPassthrough(),
    "messages": MessagesPassthrough(),
}
# When the provider does not speak the surface's format, translate to the first it speaks.
PROVIDER_FORMAT_PREFERENCE = ("chat", "responses", "messages", "gemini")
_TRANSLATING: dict[tuple[str, str], Exchange] = {("responses", "chat"): ResponsesViaChat()}


def choose_exchange(surface: str, native_formats: frozenset[str]) -> Exchange:
    """The exchange for an inbound ``surface`` and a provider speaking ``native_formats``."""
    if surface in native_formats:
        return PASSTHROUGH[surface]
    for provider_format in PROVIDER_FORMAT_PREFERENCE:
        if provider_format in native_formats:
            exchange = _TRANSLATING.get((surface, provider_format))
            if exchange is not None:
                return exchange
    raise GatewayError(
        "no_provider_available",
        f"No adapter translates the {surface} format for a provider speaking {sorted(native_formats)}",
    )
