"""Raw ASGI plumbing for the inference hot path: read the body, send a reply, watch for disconnects.

The inference routes skip Starlette's request/response objects and middleware stack (a
measurable share of the per-request CPU); everything else in the API still uses Starlette.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from .errors import GatewayError

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def read_body(receive: Receive) -> bytes:
    """The whole request body, however many ``http.request`` messages it came in."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    while message.get("more_body"):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


def header_values(scope: Scope, *names: bytes) -> dict[str, str]:
    """The first value of each wanted header (names lower-case), decoded as latin-1."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in names and name.decode() not in found:
            found[name.decode()] = value.decode("latin-1")
    return found


def encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]


@dataclass(slots=True)
class Reply:
    """A response to send: a whole body, or a stream of SSE frames (``stream``)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None

    @classmethod
    def json(cls, body: bytes, headers: dict[str, str], status: int = 200) -> Reply:
        return cls(status, [JSON_TYPE, *encode_headers(headers)], body)

    @classmethod
    def error(cls, error: GatewayError, generation_id: str, *, anthropic: bool = False) -> Reply:
        """The error in the OpenAI shape, or Anthropic's for the Messages surface."""
        return cls.json(
            error.json(generation_id, anthropic=anthropic), error.headers(generation_id), error.status
        )

    @classmethod
    def sse(cls, stream: AsyncIterator[bytes], headers: dict[str, str]) -> Reply:
        return cls(200, [*SSE_HEADERS, *encode_headers(headers)], stream=stream)

    async def send(self, send: Send, receive: Receive) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        if self.stream is None:
            await send({"type": "http.response.body", "body": self.body})
            return
        await _send_stream(self.stream, send, receive)


async def _send_stream(stream: AsyncIterator[bytes], send: Send, receive: Receive) -> None:
    """Relay frames until the stream ends; a client disconnect cancels the relay and closes it.

    Closing the generator runs its ``finally`` (which records the generation as cancelled and
    releases the upstream connection), so the provider stops generating for nobody.
    """
    current = asyncio.current_task()
    assert current is not None
    state = {"disconnected": False, "finished": False}

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not state["finished"]:
            state["disconnected"] = True
            current.cancel()

    watcher = asyncio.ensure_future(watch_disconnect())
    try:
        try:
            async for frame in stream:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            state["finished"] = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            await stream.aclose()  # type: ignore[attr-defined]
    except asyncio.CancelledError:
        if not state["disconnected"]:
            raise
        current.uncancel()
