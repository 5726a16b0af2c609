"""The live gateway in front of one fake server per provider format, shared by the package."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest

from tests.conformance.scenarios import MODEL_FOR_FORMAT, PRICE, PROVIDER_FORMATS
from tests.fakes.anthropic_server import FakeAnthropic, FakeAnthropicServer
from tests.fakes.gemini_server import FakeGemini, FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIServer
from tests.harness import Admin, GatewayServer, gateway_settings, wait_for


@dataclass
class Matrix:
    gateway: GatewayServer
    fakes: dict[str, Any]  # provider format -> fake state
    key: str

    def openai(self) -> openai.OpenAI:
        return self.gateway.openai(self.key)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.gateway.base_url, api_key=self.key, max_retries=0, timeout=60
        )


@pytest.fixture(scope="package")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    tmp_path = tmp_path_factory.mktemp("matrix")
    with (
        FakeOpenAIServer(FakeOpenAI(api_key="sk-fake")) as openai_fake,
        FakeAnthropicServer(FakeAnthropic(api_key="sk-ant")) as anthropic_fake,
        FakeGeminiServer(FakeGemini(api_key="gm-key")) as gemini_fake,
    ):
        providers = {
            "chat": {"type": "openai_compatible", "base_url": openai_fake.base_url, "api_key": "sk-fake"},
            "responses": {
                "type": "openai",
                "base_url": openai_fake.base_url,
                "api_key": "sk-fake",
                "formats": ["responses"],
            },
            "messages": {"type": "anthropic", "base_url": anthropic_fake.base_url, "api_key": "sk-ant"},
            "gemini": {"type": "google", "base_url": gemini_fake.base_url, "api_key": "gm-key"},
        }
        models = {
            MODEL_FOR_FORMAT[fmt]: {
                "max_output_tokens": 8000,
                "providers": [{"provider": fmt, "model": f"upstream-{fmt}", "price": PRICE}],
            }
            for fmt in PROVIDER_FORMATS
        }
        settings = gateway_settings(tmp_path, {"providers": providers, "models": models})
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(100_000_000_000)
        with GatewayServer(settings) as gateway:
            workspace_id = admin.workspace_id()
            wait_for(lambda: gateway.state.wallets.snapshot(workspace_id)["available"] > 0)
            fakes = {
                "chat": openai_fake.fake,
                "responses": openai_fake.fake,
                "messages": anthropic_fake.fake,
                "gemini": gemini_fake.fake,
            }
            yield Matrix(gateway, fakes, key)
