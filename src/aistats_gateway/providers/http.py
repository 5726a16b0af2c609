"""The one pooled upstream HTTP client: keep-alive HTTP/1.1 on asyncio, parsed by httptools.

Why not aiohttp or httpx: measured on this machine, aiohttp spends ~90 µs of CPU per request and
httpx/httpx2 ~1 ms, against ~20 µs for a protocol on the event loop with httptools (the parser
uvicorn uses); see docs/decisions/003-upstream-http-client.md. This client does only what the
gateway needs: POST with a body, status and headers, a body read whole or chunk by chunk,
bounded pools per origin, connect and read timeouts, TLS, and gzip/deflate bodies.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

from ..settings import ProviderConfig
from .base import UpstreamConnectError, UpstreamReply, UpstreamStatusError, UpstreamTimeout

MAX_ERROR_BODY = 64 * 1024
IDLE_KEEPALIVE_SECONDS = 15.0  # drop pooled connections idle longer than this
READ_HIGH_WATER = 1 << 20  # pause reading from the provider when this much is buffered
READ_LOW_WATER = 1 << 16


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


@functools.lru_cache(maxsize=1024)  # the same few provider URLs on every request
def split_url(url: str) -> tuple[Origin, str]:
    """``(origin, path?query)`` of an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port), target


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.idle_since = time.monotonic()
        self.closed = False
        self.released = False  # handed back to the pool (or closed) after its current request
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._header_name = b""
        self.head: asyncio.Future[None] = self._loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self.complete = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self._paused = False

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - providers never upgrade
            self._fail(ConnectionError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(exc or ConnectionError("connection closed by the provider"))

    # --- httptools callbacks --------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        # Ask now: llhttp forgets the answer once the callback returns.
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True
        self._wake()

    # --- used by the client ---------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        if not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # mark retrieved: the caller may be gone already
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, request: bytes) -> None:
        self._reset()
        self.released = False
        assert self.transport is not None
        self.transport.write(request)

    async def next_chunk(self, timeout: float) -> bytes | None:
        """The next body bytes, or None at the end of the message."""
        while not self._chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self._waiter = self._loop.create_future()
            await _wait(self._loop, self._waiter, timeout)
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < READ_LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    @property
    def reusable(self) -> bool:
        return (
            self.complete
            and not self.closed
            and self.keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def _wait(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], timeout: float) -> None:
    """Await ``future`` with a timeout, without wrapping it in a task (the cheap way)."""
    handle = loop.call_later(timeout, _expire, future)
    try:
        await future
    finally:
        handle.cancel()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _Pool:
    """Idle connections to one origin (LIFO) and a bound on how many exist at once."""

    def __init__(self, size: int) -> None:
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(size)


class UpstreamClient:
    """Shared by every provider adapter; ``start``/``close`` run inside the event loop."""

    def __init__(self, *, pool_per_origin: int = 1024) -> None:
        self._pool_per_origin = pool_per_origin
        self._pools: dict[Origin, _Pool] = {}
        self._ssl: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        for pool in self._pools.values():
            for connection in pool.idle:
                connection.close()
            pool.idle.clear()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _acquire(self, origin: Origin, provider: str, connect_timeout: float) -> _Connection:
        loop = self._loop or asyncio.get_running_loop()
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self._pool_per_origin)
        now = time.monotonic()
        while pool.idle:
            connection = pool.idle.pop()
            if connection.reusable and now - connection.idle_since < IDLE_KEEPALIVE_SECONDS:
                return connection
            connection.close()
            pool.slots.release()
        try:
            await asyncio.wait_for(pool.slots.acquire(), connect_timeout)
        except TimeoutError as exc:
            raise UpstreamConnectError(
                provider, f"all {self._pool_per_origin} connections to {provider} busy"
            ) from exc
        tls = self._ssl_context() if origin.scheme == "https" else None
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                ),
                connect_timeout,
            )
        except TimeoutError as exc:
            pool.slots.release()
            raise UpstreamConnectError(
                provider, f"connect to {provider} timed out after {connect_timeout:g}s"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            pool.slots.release()
            raise UpstreamConnectError(provider, f"could not connect to {provider}: {exc}") from exc
        return protocol

    def _release(self, origin: Origin, connection: _Connection) -> None:
        pool = self._pools[origin]
        if connection.reusable:
            connection.idle_since = time.monotonic()
            pool.idle.append(connection)
        else:
            connection.close()
            pool.slots.release()

    async def post(
        self,
        provider: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        connect_timeout: float,
        first_byte_timeout: float,
        read_timeout: float,
    ) -> UpstreamReply:
        """POST and return once the status line and headers are in.

        Non-2xx replies raise :class:`UpstreamStatusError` with the (size-capped) body read.
        ``first_byte_timeout`` bounds the wait for the headers, ``read_timeout`` every later gap
        between reads of the body (for a stream: the silence between two events).
        """
        origin, target = split_url(url)
        connection = await self._acquire(origin, provider, connect_timeout)
        lines = [f"POST {target} HTTP/1.1", f"host: {origin.host_header}", f"content-length: {len(body)}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        connection.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            await _wait(self._loop or asyncio.get_running_loop(), connection.head, first_byte_timeout)
        except TimeoutError as exc:
            self._discard(origin, connection)
            raise UpstreamTimeout(
                provider, f"{provider} did not answer within {first_byte_timeout:g}s"
            ) from exc
        except (OSError, ConnectionError) as exc:
            self._discard(origin, connection)
            raise UpstreamConnectError(provider, f"{provider} closed the connection: {exc}") from exc
        except BaseException:
            self._discard(origin, connection)
            raise
        chunks = self._body(provider, origin, connection, read_timeout)
        if connection.status >= 300:
            error_body = b""
            try:
                async for chunk in chunks:
                    error_body += chunk
                    if len(error_body) >= MAX_ERROR_BODY:
                        break
            except (UpstreamTimeout, UpstreamConnectError):
                pass
            finally:
                await chunks.aclose()
            raise UpstreamStatusError(
                provider, connection.status, error_body[:MAX_ERROR_BODY], connection.headers
            )
        return UpstreamReply(
            connection.status, connection.headers, chunks, lambda: self._finish(origin, connection)
        )

    async def post_for(
        self, config: ProviderConfig, url: str, body: bytes, headers: Mapping[str, str], *, stream: bool
    ) -> UpstreamReply:
        """:meth:`post` with the provider's configured timeouts (idle gaps for streams)."""
        return await self.post(
            config.name,
            url,
            body,
            headers,
            connect_timeout=config.connect_timeout,
            first_byte_timeout=config.first_byte_timeout,
            read_timeout=config.idle_timeout if stream else config.read_timeout,
        )

    def _discard(self, origin: Origin, connection: _Connection) -> None:
        connection.released = True
        connection.close()
        self._pools[origin].slots.release()

    def _finish(self, origin: Origin, connection: _Connection) -> None:
        """Called when the reply is released: pool the connection if its message was read whole."""
        if not connection.released:
            connection.released = True
            self._release(origin, connection)

    async def _body(
        self, provider: str, origin: Origin, connection: _Connection, read_timeout: float
    ) -> AsyncGenerator[bytes, None]:
        try:
            try:
                decoder = _decoder(connection.headers.get("content-encoding"))
            except ConnectionError as exc:
                raise UpstreamConnectError(provider, f"{provider}: {exc}") from exc
            while True:
                try:
                    chunk = await connection.next_chunk(read_timeout)
                except TimeoutError as exc:
                    raise UpstreamTimeout(
                        provider, f"{provider} stalled for more than {read_timeout:g}s"
                    ) from exc
                except (OSError, ConnectionError) as exc:
                    raise UpstreamConnectError(
                        provider, f"{provider} closed the connection mid-reply"
                    ) from exc
                if chunk is None:
                    if decoder is not None and (tail := decoder.flush()):
                        yield tail
                    return
                if decoder is not None:
                    chunk = decoder.decompress(chunk)
                    if not chunk:
                        continue
                yield chunk
        finally:
            self._finish(origin, connection)


def _decoder(encoding: str | None) -> Any:
    if not encoding or encoding == "identity":
        return None
    if encoding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ConnectionError(f"unsupported content-encoding {encoding!r}")
