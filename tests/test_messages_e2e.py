"""The Anthropic Messages surface with the anthropic SDK, passed through to an Anthropic provider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import pytest

from aistats_gateway.canonical import Usage
from aistats_gateway.money import PriceCard, parse_price
from tests.fakes.anthropic_server import Behaviour, FakeAnthropic, FakeAnthropicServer
from tests.harness import Admin, GatewayServer, gateway_settings, wait_for

MODEL = "anthropic/test-sonnet"
PRICE = {"input": "3", "output": "15", "cached_input": "0.30"}


@dataclass
class LiveAnthropic:
    gateway: GatewayServer
    fake: FakeAnthropic
    key: str

    def client(self, **kwargs: object) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.base_url, api_key=self.key, max_retries=0, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def live_anthropic(tmp_path: Path) -> Iterator[LiveAnthropic]:
    with FakeAnthropicServer(FakeAnthropic(api_key="sk-ant-fake")) as server:
        config = {
            "providers": {
                "claude": {"type": "anthropic", "base_url": server.base_url, "api_key": "sk-ant-fake"}
            },
            "models": {
                MODEL: {
                    "max_output_tokens": 2000,
                    "providers": [{"provider": "claude", "model": "claude-test-1", "price": PRICE}],
                }
            },
        }
        settings = gateway_settings(tmp_path, config)
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(10_000_000_000)
        with GatewayServer(settings) as gateway:
            workspace_id = admin.workspace_id()
            wait_for(lambda: gateway.state.wallets.snapshot(workspace_id)["available"] > 0)
            yield LiveAnthropic(gateway, server.fake, key)


def test_messages_non_stream_passthrough_with_exact_cost(live_anthropic: LiveAnthropic) -> None:
    live_anthropic.fake.enqueue(
        Behaviour(text="bonjour", input_tokens=1000, output_tokens=200, cached_tokens=100)
    )
    message = live_anthropic.client().messages.create(
        model=MODEL, max_tokens=500, system="be brief", messages=[{"role": "user", "content": "hi"}]
    )
    sent = live_anthropic.fake.requests[-1]
    assert sent.path == "/v1/messages" and sent.body["model"] == "claude-test-1"
    assert sent.headers["x-api-key"] == "sk-ant-fake" and "anthropic-version" in sent.headers
    assert message.content[0].text == "bonjour"  # type: ignore[union-attr]
    assert message.id.startswith("msg_") and message.model == MODEL and message.stop_reason == "end_turn"
    card = PriceCard(parse_price("3"), parse_price("15"), parse_price("0.30"))
    # Anthropic's input_tokens (1000) excludes the 100 cache reads: 1100 input tokens in all.
    expected = card.cost(Usage(input_tokens=1100, cached_input_tokens=100, output_tokens=200))
    assert expected == 1000 * 3000 + 100 * 300 + 200 * 15000
    assert message.usage.model_extra is not None and message.usage.model_extra["cost"] == expected / 1e9


def test_messages_stream_passthrough_keeps_events_and_adds_cost(live_anthropic: LiveAnthropic) -> None:
    args = {"city": "Lyon", "days": 2}
    live_anthropic.fake.enqueue(
        Behaviour(text="let me check", tool_calls=[{"name": "weather", "arguments": json.dumps(args)}])
    )
    with live_anthropic.client().messages.stream(
        model=MODEL,
        max_tokens=500,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[{"name": "weather", "input_schema": {"type": "object"}}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    types = [event.type for event in events]
    assert types[0] == "message_start" and "content_block_delta" in types
    message_delta = next(event for event in events if event.type == "message_delta")
    assert message_delta.usage.model_extra is not None and message_delta.usage.model_extra["cost"] > 0  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    assert final.content[0].text == "let me check"  # type: ignore[union-attr]
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.input == args
    assert final.id.startswith("msg_") and final.model == MODEL


def test_messages_errors_use_the_anthropic_shape(live_anthropic: LiveAnthropic) -> None:
    base = live_anthropic.gateway.base_url
    unauthorized = httpx.post(f"{base}/v1/messages", json={"model": MODEL}, headers={"x-api-key": "nope"})
    assert unauthorized.status_code == 401
    body = unauthorized.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert body["generation_id"] == unauthorized.headers["x-generation-id"]
    with pytest.raises(anthropic.NotFoundError) as missing:
        live_anthropic.client().messages.create(
            model="nope/model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.response.json()["error"]["type"] == "not_found_error"


def test_messages_authenticates_with_x_api_key(live_anthropic: LiveAnthropic) -> None:
    response = httpx.post(
        f"{live_anthropic.gateway.base_url}/v1/messages",
        json={"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": "Reply with: ok"}]},
        headers={"x-api-key": live_anthropic.key, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200 and response.json()["content"][0]["text"] == "ok"


def test_messages_stream_error_is_an_anthropic_error_event(live_anthropic: LiveAnthropic) -> None:
    live_anthropic.fake.enqueue(Behaviour(text="one two three four", stream_error=True, drop_after_chunks=4))
    response = httpx.post(
        f"{live_anthropic.gateway.base_url}/v1/messages",
        json={
            "model": MODEL,
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        headers={"x-api-key": live_anthropic.key},
    )
    assert response.status_code == 200
    assert "event: error" in response.text and '"type":"error"' in response.text
