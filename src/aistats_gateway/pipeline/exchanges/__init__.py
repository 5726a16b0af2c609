"""How one inbound surface talks to one provider wire format.

Same-format pairs are passthrough (only ``model``/``id`` rewritten, usage read, cost added);
every other pair translates through the canonical types with the two formats' codecs.
"""

from __future__ import annotations

from ...api.errors import GatewayError
from ...formats.registry import CODECS, PROVIDER_VARIANTS, SURFACE_FORMATS
from .base import Completed, Exchange, StreamTranslator
from .chat_passthrough import ChatPassthrough
from .messages_passthrough import MessagesPassthrough
from .responses_passthrough import ResponsesPassthrough
from .translating import TranslatingExchange

__all__ = ["Completed", "Exchange", "StreamTranslator", "choose_exchange"]

PASSTHROUGH: dict[str, Exchange] = {
    "chat": ChatPassthrough(),
    "responses": ResponsesPassthrough(),
    "messages": MessagesPassthrough(),
}
# When the provider does not speak the surface's format, translate to the first it speaks.
PROVIDER_FORMAT_PREFERENCE = ("chat", "responses", "messages", "gemini")

# Every (surface, provider format) pair, and the variants some provider types need.
_TRANSLATING: dict[tuple[str, str, str | None], Exchange] = {
    (surface, fmt, None): TranslatingExchange(CODECS[surface], CODECS[fmt])
    for surface in SURFACE_FORMATS
    for fmt in CODECS
    if fmt != surface
}
_TRANSLATING.update(
    {
        (surface, fmt, provider_type): TranslatingExchange(CODECS[surface], codec)
        for (fmt, provider_type), codec in PROVIDER_VARIANTS.items()
        for surface in SURFACE_FORMATS
        if fmt != surface
    }
)


def choose_exchange(surface: str, native_formats: frozenset[str], provider_type: str) -> Exchange:
    """The exchange for an inbound ``surface`` and a provider speaking ``native_formats``."""
    if surface in native_formats:
        return PASSTHROUGH[surface]
    for fmt in PROVIDER_FORMAT_PREFERENCE:
        if fmt in native_formats:
            return _TRANSLATING.get((surface, fmt, provider_type)) or _TRANSLATING[(surface, fmt, None)]
    raise GatewayError(
        "no_provider_available",
        f"No adapter translates the {surface} format for a provider speaking {sorted(native_formats)}",
    )
