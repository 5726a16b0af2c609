"""Every provider adapter sends a per-request BYOK key in its own auth header, in place of the
configured one; the fakes (which speak each provider's real wire format) accept only that key."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from aistats_gateway.providers.anthropic import AnthropicProvider
from aistats_gateway.providers.base import UpstreamStatusError
from aistats_gateway.providers.google import GoogleProvider
from aistats_gateway.providers.http import UpstreamClient
from aistats_gateway.providers.openai_like import OpenAILikeProvider
from aistats_gateway.settings import ProviderConfig
from tests.fakes.anthropic_server import FakeAnthropic, FakeAnthropicServer
from tests.fakes.gemini_server import FakeGemini, FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIServer

BYOK_KEY = "byok-key-of-the-workspace-9a8b7c"
GATEWAY_KEY = "gateway-own-key-1234567890"

BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "openai": ("chat", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    "anthropic": (
        "messages",
        {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "google": ("gemini", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
}
SERVERS: dict[str, Any] = {
    "openai": (FakeOpenAIServer, FakeOpenAI, OpenAILikeProvider),
    "anthropic": (FakeAnthropicServer, FakeAnthropic, AnthropicProvider),
    "google": (FakeGeminiServer, FakeGemini, GoogleProvider),
}


async def _send(adapter: Any, fmt: str, body: dict[str, Any], credential: str | None) -> int:
    reply = await adapter.send(
        fmt, orjson.dumps(body), stream=False, model="gemini-2.0-flash", credential=credential
    )
    try:
        await reply.read()
    finally:
        reply.release()
    return int(reply.status)


@pytest.mark.parametrize("provider_type", ["openai", "anthropic", "google"])
def test_the_byok_key_replaces_the_configured_one_and_never_comes_back_in_a_failure(
    provider_type: str,
) -> None:
    server_class, fake_class, adapter_class = SERVERS[provider_type]
    fmt, body = BODIES[provider_type]
    with server_class(fake_class(api_key=BYOK_KEY)) as server:
        config = ProviderConfig(name="p", type=provider_type, base_url=server.base_url, api_key=GATEWAY_KEY)

        async def scenario() -> None:
            client = UpstreamClient()
            await client.start()
            try:
                adapter = adapter_class(config, client)
                assert await _send(adapter, fmt, body, BYOK_KEY) == 200
                with pytest.raises(UpstreamStatusError) as refused:  # the gateway's key is refused
                    await _send(adapter, fmt, body, None)
                assert not refused.value.byok
                server.fake.api_key = GATEWAY_KEY  # now the BYOK key is the wrong one
                with pytest.raises(UpstreamStatusError) as rejected:
                    await _send(adapter, fmt, body, BYOK_KEY)
                failure = rejected.value
                assert failure.byok and failure.status in (400, 401, 403)
                assert BYOK_KEY.encode() not in failure.body and GATEWAY_KEY.encode() not in failure.body
                assert BYOK_KEY not in repr(failure) and BYOK_KEY not in str(failure)
            finally:
                await client.close()

        asyncio.run(scenario())
    # Exactly one auth header per request, never both keys.
    for request in server.fake.requests:
        presented = [v for v in request.headers.values() if BYOK_KEY in v or GATEWAY_KEY in v]
        assert len(presented) == 1, request.headers
