"""Server-sent events: an incremental decoder for upstream streams and frame encoders.

The decoder follows the WHATWG event-stream rules that matter for LLM providers: ``\\n``,
``\\r\\n`` and ``\\r`` line ends, multi-line ``data:``, comments (``:``), and an event ending at
a blank line. Bytes are fed as they arrive; events are returned as soon as they are complete.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(slots=True)
class ServerSentEvent:
    """One decoded event: its ``event:`` name (None when absent) and joined ``data:`` lines."""

    event: str | None
    data: str

    def json(self) -> dict:
        return orjson.loads(self.data)


class SSEDecoder:
    """Turns a byte stream into :class:`ServerSentEvent` objects, chunk by chunk."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Add bytes; return the events completed by them (possibly none)."""
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            # A lone trailing \r may be the first half of \r\n: keep it for the next chunk.
            keep_cr = buffer.endswith(b"\r")
            if keep_cr:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buffer += b"\r"
        events: list[ServerSentEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            self._line(buffer[start:end].decode("utf-8"), events)
            start = end + 1
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: return a last event that was not followed by a blank line."""
        events: list[ServerSentEvent] = []
        if self._buffer:
            self._line(self._buffer.rstrip(b"\r").decode("utf-8"), events)
            self._buffer = b""
        self._line("", events)
        return events

    def _line(self, line: str, events: list[ServerSentEvent]) -> None:
        if not line:
            if self._data:
                events.append(ServerSentEvent(self._event, "\n".join(self._data)))
            self._event = None
            self._data = []
            return
        if line[0] == ":":
            return
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value


def encode_data(payload: bytes) -> bytes:
    """A ``data:``-only frame, as Chat Completions streams use."""
    return b"data: " + payload + b"\n\n"


def encode_event(name: str, payload: bytes) -> bytes:
    """A named frame, as Responses and Anthropic Messages streams use."""
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


DONE_FRAME = b"data: [DONE]\n\n"
