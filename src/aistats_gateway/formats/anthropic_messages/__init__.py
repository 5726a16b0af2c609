"""Anthropic Messages ("messages") ⇄ canonical: the gateway's ``/v1/messages`` surface and
Anthropic as a provider. ``CODEC`` is the :class:`~aistats_gateway.formats.base.Codec` instance.

Modules: :mod:`.request` (client request), :mod:`.provider_request` (provider request),
:mod:`.response` (whole messages, both ways), :mod:`.stream_encoder` (client stream),
:mod:`.stream_decoder` (provider stream), :mod:`.wire` (shared names, maps, ids, usage).
"""

from .codec import CODEC, AnthropicMessagesCodec
from .stream_decoder import MessagesStreamDecoder
from .stream_encoder import MessagesStreamEncoder
from .wire import STRUCTURED_TOOL

__all__ = [
    "CODEC",
    "STRUCTURED_TOOL",
    "AnthropicMessagesCodec",
    "MessagesStreamDecoder",
    "MessagesStreamEncoder",
]
