"""Fixtures for end-to-end tests: a fake OpenAI provider and a live gateway in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIServer
from tests.harness import Admin, GatewayServer, fake_provider_config, gateway_settings


@dataclass
class Live:
    """A running gateway, its fake provider, an admin handle and one API key."""

    gateway: GatewayServer
    fake: FakeOpenAI
    admin: Admin
    key: str
    kid: str

    def client(self, key: str | None = None, **kwargs: object) -> openai.OpenAI:
        return self.gateway.openai(key or self.key, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(FakeOpenAI(api_key="sk-fake")) as server:
        yield server


@pytest.fixture
def live(tmp_path: Path, fake_server: FakeOpenAIServer) -> Iterator[Live]:
    """Gateway on SQLite whose models route to the fake; one key for ``default``, empty wallet."""
    settings = gateway_settings(tmp_path, fake_provider_config(fake_server.base_url, read=2.0))
    admin = Admin(settings)
    key, kid = admin.create_key()
    with GatewayServer(settings) as gateway:
        yield Live(gateway, fake_server.fake, admin, key, kid)
