"""The one pooled upstream HTTP client: bounded pool, keep-alive, connect and read timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp

from .base import UpstreamConnectError, UpstreamReply, UpstreamStatusError, UpstreamTimeout

MAX_ERROR_BODY = 64 * 1024


class UpstreamClient:
    """Owns the aiohttp session shared by every provider adapter (created inside the event loop)."""

    def __init__(self, *, pool_size: int = 512, pool_per_host: int = 256) -> None:
        self._pool_size = pool_size
        self._pool_per_host = pool_per_host
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=self._pool_per_host,
            keepalive_timeout=30,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self,
        provider: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> UpstreamReply:
        """POST and return once the status line and headers are in.

        Non-2xx replies raise :class:`UpstreamStatusError` with the (size-capped) body read.
        ``read_timeout`` bounds the wait for the headers and every later gap between reads.
        """
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() was not called")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        try:
            response = await self._session.post(url, data=body, headers=headers, timeout=timeout)
        except TimeoutError as exc:
            # aiohttp raises ServerTimeoutError (a TimeoutError) for both; tell them apart by type.
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise UpstreamConnectError(provider, f"connect to {provider} timed out") from exc
            raise UpstreamTimeout(provider, f"{provider} did not answer within {read_timeout:g}s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(provider, f"could not connect to {provider}: {exc.os_error}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError(provider, f"request to {provider} failed: {exc!r}") from exc
        reply_headers = {k.lower(): v for k, v in response.headers.items()}
        if response.status >= 300:
            try:
                error_body = await response.content.read(MAX_ERROR_BODY)
            except (TimeoutError, aiohttp.ClientError):
                error_body = b""
            response.release()
            raise UpstreamStatusError(provider, response.status, error_body, reply_headers)
        return UpstreamReply(
            status=response.status,
            headers=reply_headers,
            chunks=_iter_body(provider, response, read_timeout),
            close=response.close,
        )


async def _iter_body(
    provider: str, response: aiohttp.ClientResponse, read_timeout: float
) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except TimeoutError as exc:
        raise UpstreamTimeout(provider, f"{provider} stalled for more than {read_timeout:g}s") from exc
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamConnectError(provider, f"{provider} closed the connection mid-reply") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamConnectError(provider, f"reading from {provider} failed: {exc!r}") from exc
    finally:
        response.release()
