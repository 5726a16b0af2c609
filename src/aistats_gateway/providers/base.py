"""What every provider adapter offers the pipeline, and the failures it can raise.

An adapter knows one provider's HTTP API: where each endpoint lives, how to authenticate,
which wire formats it speaks natively. The pipeline decides passthrough vs translation from
``native_formats``; the adapter only sends bytes and hands back the upstream reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from ..settings import ProviderConfig


class UpstreamFailure(Exception):
    """An attempt that did not produce a usable reply. ``retryable`` drives failover."""

    retryable = True
    byok = False  # True when the attempt used the workspace's own key (BYOK), not the gateway's

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message


class UpstreamConnectError(UpstreamFailure):
    """The provider could not be reached (DNS, refused, TLS, connect timeout)."""


class UpstreamTimeout(UpstreamFailure):
    """The provider accepted the request but did not answer (or stalled) within the read timeout."""


class UpstreamStatusError(UpstreamFailure):
    """The provider answered with a non-2xx status."""

    def __init__(self, provider: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(provider, f"{provider} answered HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers
        self.retryable = status == 429 or status >= 500 or status in (401, 403, 408)


@dataclass(slots=True)
class UpstreamReply:
    """A 2xx reply whose body is read either whole (``read``) or as a byte stream (``chunks``)."""

    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    close: object = field(repr=False, default=None)  # zero-arg callable releasing the connection

    async def read(self) -> bytes:
        """The whole body (non-streamed replies only)."""
        parts = [chunk async for chunk in self.chunks]
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back (or drop it, when the body was not read to the end)."""
        if callable(self.close):
            self.close()


class Provider(Protocol):
    """A provider adapter: one configured upstream (``config.name``) of some type."""

    config: ProviderConfig
    native_formats: frozenset[str]  # wire formats it speaks: "chat", "responses", "messages", "gemini"

    async def send(
        self, fmt: str, body: bytes, *, stream: bool, model: str, credential: str | None = None
    ) -> UpstreamReply:
        """POST ``body`` to the endpoint for wire format ``fmt``; raise :class:`UpstreamFailure`.

        ``model`` is the provider's model id, for APIs that put it in the URL (Gemini).
        ``credential``: a workspace's own key (BYOK) used instead of the configured one; a
        failure's body and headers never carry either key (:func:`.credentials.redacted`).
        """
        ...
