"""What the runner needs from a video provider, and the HTTP plumbing the adapters share.

Video APIs need GET and DELETE and streamed downloads, which the pooled request-path client
(providers/http.py, POST only) does not do; this off-hot-path code uses one bounded ``httpx``
client instead. Every call has the provider's connect timeout and ``videos.timeout_s`` for reads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from ..api.errors import GatewayError
from ..providers.base import UpstreamConnectError, UpstreamFailure, UpstreamStatusError, UpstreamTimeout
from ..providers.credentials import redacted
from ..settings import ProviderConfig


@dataclass(slots=True)
class VideoSpec:
    """What to generate, as the client asked (OpenAI's fields)."""

    prompt: str
    seconds: int
    size: str
    image: bytes | None = None
    image_type: str | None = None


@dataclass(slots=True)
class UpstreamState:
    """A provider's view of a job: status in OpenAI's words, progress 0-100, error when failed."""

    status: str  # queued | in_progress | completed | failed
    progress: int = 0
    error: dict[str, Any] | None = None
    content_url: str | None = None  # where the finished video is (Veo); None: the adapter knows


class VideoUpstream(Protocol):
    """One configured provider's video API.

    Every call takes ``credential``: a workspace's own key (BYOK) used instead of the configured
    one; a job created with it is polled, downloaded and cancelled with it too.
    """

    config: ProviderConfig

    def check(self, spec: VideoSpec) -> None:
        """Raise a 400 :class:`GatewayError` for what this provider cannot generate."""
        ...

    async def create(
        self, model: str, spec: VideoSpec, credential: str | None = None
    ) -> tuple[str, UpstreamState]:
        """Submit a job; return the provider's id for it and its first state."""
        ...

    async def poll(self, upstream_id: str, credential: str | None = None) -> UpstreamState: ...

    async def download(
        self, upstream_id: str, state: UpstreamState, dest: Path, credential: str | None = None
    ) -> str:
        """Write the finished video to ``dest``; return its content type."""
        ...

    async def cancel(self, upstream_id: str, credential: str | None = None) -> None:
        """Best effort: stop (or delete) the job upstream."""
        ...


def new_http_client() -> httpx.AsyncClient:
    """The shared client for video calls: bounded pool, timeouts set per call."""
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=32, max_keepalive_connections=8))


def timeout(config: ProviderConfig, read_s: float) -> httpx.Timeout:
    return httpx.Timeout(read_s, connect=config.connect_timeout)


@contextlib.asynccontextmanager
async def calling(provider: str) -> AsyncIterator[None]:
    """Turn transport errors into the pipeline's :class:`UpstreamFailure` types."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(provider, f"no answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectError(provider, f"{type(exc).__name__}: {exc}") from exc


def check_status(config: ProviderConfig, response: httpx.Response, credential: str | None = None) -> None:
    """Raise :class:`UpstreamStatusError` for a non-2xx answer (body already read), with neither
    the workspace's key (``credential``) nor the configured one in it."""
    if response.status_code >= 300:
        failure = UpstreamStatusError(
            config.name, response.status_code, response.content, dict(response.headers)
        )
        raise redacted(failure, credential, config.api_key)


def json_of(
    config: ProviderConfig, response: httpx.Response, credential: str | None = None
) -> dict[str, Any]:
    """The JSON object of a 2xx answer; :class:`UpstreamFailure` otherwise."""
    provider = config.name
    check_status(config, response, credential)
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFailure(provider, "the provider's answer is not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamFailure(provider, "the provider's answer is not a JSON object")
    return data


async def stream_to_file(
    client: httpx.AsyncClient,
    config: ProviderConfig,
    request: httpx.Request,
    dest: Path,
    credential: str | None = None,
) -> str:
    """Stream a download into ``dest`` (written to a temporary name, then renamed); content type."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    async with calling(config.name):
        response = await client.send(request, stream=True, follow_redirects=True)
        try:
            if response.status_code >= 300:
                await response.aread()
                check_status(config, response, credential)
            with partial.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        finally:
            await response.aclose()
    os.replace(partial, dest)
    return response.headers.get("content-type", "video/mp4").split(";")[0].strip() or "video/mp4"


def unsupported(message: str, param: str) -> GatewayError:
    return GatewayError("validation_error", message, param=param, code="unsupported_value")
