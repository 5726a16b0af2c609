"""Each OpenAI-shaped provider type reaches the right endpoint, with its key as a bearer token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Admin, GatewayServer, fake_provider_config, gateway_settings


@pytest.mark.parametrize(
    ("provider_type", "base_path", "surface", "expected_path"),
    [
        ("openai", "/v1", "responses", "/v1/responses"),
        ("xai", "/v1", "responses", "/v1/responses"),
        ("openai_compatible", "/v1", "responses", "/v1/chat/completions"),
    ],
)
def test_provider_type_reaches_its_endpoint(
    tmp_path: Path,
    fake_server: FakeOpenAIServer,
    provider_type: str,
    base_path: str,
    surface: str,
    expected_path: str,
) -> None:
    config = {
        "providers": {
            "upstream": {
                "type": provider_type,
                "base_url": fake_server.root_url + base_path,
                "api_key": "sk-fake",
            }
        },
        "models": {
            "test/model:free": {
                "providers": [
                    {"provider": "upstream", "model": "up-model", "price": {"input": "0", "output": "0"}}
                ]
            }
        },
    }
    settings = gateway_settings(tmp_path, config)
    key, _ = Admin(settings).create_key()
    with GatewayServer(settings) as gateway:
        client = gateway.openai(key)
        if surface == "responses":
            text = client.responses.create(model="test/model:free", input="Reply with: routed").output_text
        else:
            completion = client.chat.completions.create(
                model="test/model:free", messages=[{"role": "user", "content": "Reply with: routed"}]
            )
            text = completion.choices[0].message.content or ""
    assert text == "routed"
    sent = fake_server.fake.requests[-1]
    assert sent.path == expected_path
    assert sent.headers["authorization"] == "Bearer sk-fake"
    assert sent.body["model"] == "up-model"


def test_upstream_connections_are_kept_alive_and_reused(
    tmp_path: Path, fake_server: FakeOpenAIServer
) -> None:
    settings = gateway_settings(tmp_path, fake_provider_config(fake_server.base_url))
    key, _ = Admin(settings).create_key()
    with GatewayServer(settings) as gateway:
        client = gateway.openai(key)
        for _ in range(5):
            client.responses.create(model="google/gemma-3-27b:free", input="hi")
        pools = gateway.state.upstream._pools  # the one origin of the fake
        (pool,) = pools.values()
        assert len(pool.idle) == 1, "five sequential calls share one pooled connection"
