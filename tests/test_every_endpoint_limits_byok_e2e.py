"""Key limits, the free tier and BYOK on every endpoint, not only the chat surfaces: embeddings,
images and video jobs go through the same admission and use a workspace's own provider key
(the fake OpenAI server accepts only the key it is told to), and /v1/messages answers Anthropic's
rate-limit header names next to OpenAI's, read through the anthropic SDK's raw response."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from aistats_gateway.key_limits import KeyLimits
from aistats_gateway.settings import load_settings
from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIServer
from tests.harness import TEST_PEPPER, Admin, GatewayServer, wait_for, write_config
from tests.test_limits_e2e import create_key

GATEWAY_KEY = "sk-gateway-own-key-5e1c0b9d7a"
BYOK_KEY = "sk-byok-workspace-key-3c8f2a6e4d"
ADMIN_TOKEN = "admin-token-for-wiring-tests-0123456789abcdef"
MASTER = "k1:" + base64.b64encode(os.urandom(32)).decode()
EMBED = "test/embed"
EMBED_FREE = "test/embed:free"
IMAGE = "test/per-image"
VIDEO = "test/video"
CHAT = "openai/gpt-4o-mini"
EMBED_PRICE = 100_000  # nano-USD per input token ("100" USD per 1M)
IMAGE_PRICE = 40_000_000  # nano-USD per image ("0.04")
VIDEO_SECOND = 100_000_000  # nano-USD per second ("0.10")


def fee(list_cost: int) -> int:
    """The BYOK fee (5 %) of a list cost, rounded up to the nano-USD."""
    return -(-list_cost * 5 // 100)


def _config(base_url: str) -> dict[str, Any]:
    fake = {"type": "openai", "base_url": base_url, "api_key": GATEWAY_KEY, "timeouts": {"read": 5.0}}
    return {
        "providers": {"fake": fake},
        "models": {
            EMBED: {
                "kind": "embeddings",
                "providers": [
                    {
                        "provider": "fake",
                        "model": "text-embedding-3-small",
                        "price": {"input": "100", "output": "0"},
                    }
                ],
            },
            EMBED_FREE: {
                "kind": "embeddings",
                "providers": [
                    {
                        "provider": "fake",
                        "model": "text-embedding-3-small",
                        "price": {"input": "0", "output": "0"},
                    }
                ],
            },
            IMAGE: {
                "kind": "images",
                "providers": [
                    {
                        "provider": "fake",
                        "model": "imagine-1",
                        "price": {"input": "0", "output": "0", "image": "0.04"},
                    }
                ],
            },
            VIDEO: {
                "kind": "videos",
                "providers": [
                    {
                        "provider": "fake",
                        "model": "sora-2",
                        "price": {"input": "0", "output": "0", "video_second": "0.10"},
                    }
                ],
            },
            CHAT: {
                "max_output_tokens": 1000,
                "providers": [
                    {"provider": "fake", "model": "gpt-4o-mini", "price": {"input": "0.15", "output": "0.60"}}
                ],
            },
        },
        "byok": {"fee_percent": "5"},
        "limits": {
            "free": {"requests_per_minute": 1, "requests_per_day": 50, "requests_per_day_topped_up": 50}
        },
        "videos": {"poll_initial_s": 0.1, "poll_max_s": 0.3, "tick_s": 0.1, "lease_s": 5, "timeout_s": 5},
    }


@dataclass
class Live:
    gateway: GatewayServer
    fake: FakeOpenAI
    admin: Admin
    workspace_id: str
    key: str  # a key without limits, in a workspace with credits
    limited: dict[str, str]  # name -> a key with limits

    def http(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        url = self.gateway.base_url + path
        return httpx.request(method, url, headers={"authorization": f"Bearer {key}"}, timeout=10, **kwargs)

    def client(self, key: str | None = None) -> openai.OpenAI:
        return self.gateway.openai(key or self.key)

    def record(self, generation_id: str) -> dict[str, Any]:
        def read() -> dict[str, Any] | None:
            response = self.http("GET", f"/v1/generations?id={generation_id}", self.key)
            return response.json()["data"] if response.status_code == 200 else None

        found: dict[str, Any] = wait_for(read)
        return found

    def store_byok(self) -> str:
        """Give the workspace its own key for ``fake``; the fake then accepts only that key."""
        body = {"provider": "fake", "api_key": BYOK_KEY, "workspace_id": self.workspace_id}
        created = self.http("POST", "/v1/byok", ADMIN_TOKEN, json=body)
        assert created.status_code == 201, created.text
        self.wait_cached(True)
        self.fake.api_key = BYOK_KEY
        return str(created.json()["id"])

    def wait_cached(self, present: bool) -> None:
        credentials = self.gateway.state.credentials
        wait_for(lambda: bool(credentials.for_workspace(self.workspace_id)) == present)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    fake = FakeOpenAI(api_key=GATEWAY_KEY)
    with FakeOpenAIServer(fake) as server:
        env = {
            "AISTATS_DATA_DIR": str(tmp_path / "data"),
            "AISTATS_KEY_PEPPER": TEST_PEPPER,
            "AISTATS_ADMIN_TOKEN": ADMIN_TOKEN,
            "AISTATS_BYOK_MASTER_KEYS": MASTER,
        }
        settings = load_settings(write_config(tmp_path, _config(server.base_url)), env=env)
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(10 * 10**9)
        # Keys are made before the gateway starts, so its first key load knows them all.
        limited = {
            name: create_key(admin, KeyLimits(requests_per_minute=1))
            for name in ("embeddings", "images", "videos")
        }
        limited["models"] = create_key(admin, KeyLimits(allowed_models=("openai/*",)))
        limited["messages"] = create_key(admin, KeyLimits(requests_per_minute=2, tokens_per_minute=100_000))
        with GatewayServer(settings, refresh_interval=0.1) as gateway:
            yield Live(gateway, fake, admin, admin.workspace_id(), key, limited)


# --- key limits -------------------------------------------------------------------------------


def _assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-limit-requests"] == "1"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    body = response.json()
    assert body["reason"] == "rate_limit_error" and body["error"]["code"] == "rate_limit_exceeded"
    assert "1 requests per minute" in body["error"]["message"]
    assert body["generation_id"] == response.headers["x-generation-id"]


def test_requests_per_minute_applies_to_embeddings_images_and_video_jobs(live: Live) -> None:
    embeddings = live.client(live.limited["embeddings"])
    first = embeddings.embeddings.with_raw_response.create(model=EMBED, input="a cat")
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as caught:
        embeddings.embeddings.create(model=EMBED, input="a cat")
    _assert_rate_limited(caught.value.response)

    images = live.client(live.limited["images"])
    made = images.images.with_raw_response.generate(model=IMAGE, prompt="a red square")
    assert made.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as caught:
        images.images.generate(model=IMAGE, prompt="a red square")
    _assert_rate_limited(caught.value.response)

    videos = live.client(live.limited["videos"])
    created = videos.videos.with_raw_response.create(model=VIDEO, prompt="a lighthouse")
    assert created.headers["x-ratelimit-remaining-requests"] == "0"
    video = created.parse()
    assert video.status == "queued"
    with pytest.raises(openai.RateLimitError) as caught:
        videos.videos.create(model=VIDEO, prompt="a lighthouse")
    _assert_rate_limited(caught.value.response)
    jobs = videos.videos.list()
    assert [job.id for job in jobs] == [video.id], "the refused job was never created"


def test_allowed_models_refuse_other_models_on_every_endpoint(live: Live) -> None:
    client = live.client(live.limited["models"])
    calls = [
        lambda: client.embeddings.create(model=EMBED, input="x"),
        lambda: client.images.generate(model=IMAGE, prompt="x"),
        lambda: client.videos.create(model=VIDEO, prompt="x"),
    ]
    for call, model in zip(calls, (EMBED, IMAGE, VIDEO), strict=True):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            call()
        body = caught.value.response.json()
        assert body["error"]["code"] == "model_not_allowed" and f"'{model}'" in body["error"]["message"]
        assert caught.value.response.headers["x-should-retry"] == "false"
    assert not live.fake.requests, "nothing refused reached the provider"


def test_the_free_tier_counts_free_embeddings_models(live: Live) -> None:
    client = live.client()
    served = client.embeddings.with_raw_response.create(model=EMBED_FREE, input="free words")
    assert served.headers["x-ratelimit-limit-requests"] == "1"  # the free tier's 1 per minute
    assert served.http_response.json()["usage"]["cost"] == 0
    with pytest.raises(openai.RateLimitError) as caught:
        client.embeddings.create(model=EMBED_FREE, input="free words")
    assert caught.value.response.json()["error"]["code"] == "free_tier_rate_limit"
    # A paid model is not held to the free tier.
    client.embeddings.create(model=EMBED, input="paid words")
    info = live.http("GET", "/v1/key", live.key).json()["data"]
    assert info["free_tier"]["requests_per_day"]["used"] == 1  # the refused one is not counted


# --- BYOK ---------------------------------------------------------------------------------------


def test_embeddings_and_images_use_the_workspace_key_and_bill_the_fee(live: Live) -> None:
    live.store_byok()
    client = live.client()

    embedded = client.embeddings.with_raw_response.create(model=EMBED, input=["a cat", "a dog"])
    assert live.fake.requests[-1].headers["authorization"] == f"Bearer {BYOK_KEY}"
    tokens = embedded.parse().usage.prompt_tokens
    record = live.record(embedded.headers["x-generation-id"])
    assert record["cost_nanos"] == fee(tokens * EMBED_PRICE)
    assert record["attempts"][0]["byok"] is True

    made = client.images.with_raw_response.generate(model=IMAGE, prompt="a blue square", n=2)
    assert live.fake.requests[-1].headers["authorization"] == f"Bearer {BYOK_KEY}"
    assert len(made.parse().data or []) == 2
    record = live.record(made.headers["x-generation-id"])
    assert record["cost_nanos"] == fee(2 * IMAGE_PRICE)
    assert record["attempts"][0]["byok"] is True
    assert BYOK_KEY not in made.http_response.text and BYOK_KEY not in embedded.http_response.text


def test_a_video_job_is_created_and_polled_with_the_workspace_key_and_billed_the_fee(live: Live) -> None:
    live.store_byok()
    client = live.client()
    video = client.videos.create(model=VIDEO, prompt="a lighthouse", seconds="4")
    done = wait_for(
        lambda: (v := client.videos.retrieve(video.id)).status in ("completed", "failed") and v, 15, 0.05
    )
    assert done.status == "completed", done.error
    video_calls = [r for r in live.fake.requests if "/videos" in r.path]
    assert {r.method for r in video_calls} >= {"POST", "GET"}
    assert all(r.headers["authorization"] == f"Bearer {BYOK_KEY}" for r in video_calls)
    assert any(r.path.endswith("/content") for r in video_calls), "downloaded with the workspace key"
    generation_id = (done.model_extra or {})["generation_id"]
    record = live.record(generation_id)
    assert record["cost_nanos"] == fee(4 * VIDEO_SECOND)
    assert record["attempts"][0]["byok"] is True


def test_a_video_job_whose_workspace_key_is_deleted_fails_and_bills_nothing(live: Live) -> None:
    credential_id = live.store_byok()
    live.fake.videos.duration_s = 60  # still running when the key goes
    client = live.client()
    video = client.videos.create(model=VIDEO, prompt="a long take", seconds="4")
    wait_for(lambda: client.videos.retrieve(video.id).status == "in_progress", 10)
    deleted = live.http("DELETE", f"/v1/byok/{credential_id}", ADMIN_TOKEN)
    assert deleted.status_code == 200, deleted.text
    live.wait_cached(False)
    failed = wait_for(lambda: (v := client.videos.retrieve(video.id)).status == "failed" and v, 10, 0.05)
    assert failed.error is not None and failed.error.code == "byok_key_missing"
    assert "provider 'fake'" in failed.error.message and "Nothing is billed" in failed.error.message
    record = live.record((failed.model_extra or {})["generation_id"])
    assert record["status"] == "failed" and record["cost_nanos"] == 0
    assert all(r.headers.get("authorization") != f"Bearer {GATEWAY_KEY}" for r in live.fake.requests)


# --- /v1/messages: Anthropic's rate-limit header names --------------------------------------------


def _rfc3339(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_messages_send_anthropic_ratelimit_headers_next_to_openai_ones(live: Live) -> None:
    client = anthropic.Anthropic(
        base_url=live.gateway.base_url, api_key=live.limited["messages"], max_retries=0
    )
    hi = [{"role": "user", "content": "Reply with: hi"}]
    raw = client.messages.with_raw_response.create(model=CHAT, max_tokens=50, messages=hi)  # type: ignore[arg-type]
    assert raw.parse().content[0].text == "hi"  # type: ignore[union-attr]
    headers = raw.headers
    assert headers["anthropic-ratelimit-requests-limit"] == "2"
    assert headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert headers["anthropic-ratelimit-tokens-limit"] == "100000"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "100000"  # nothing counted before this one
    now = datetime.now(UTC)
    for kind in ("requests", "tokens"):
        reset = _rfc3339(headers[f"anthropic-ratelimit-{kind}-reset"])
        # when the sliding window (this minute and the last, weighted) is empty again: < 2 min
        assert now.timestamp() - 1 <= reset.timestamp() <= now.timestamp() + 121
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "1"

    client.messages.create(model=CHAT, max_tokens=50, messages=hi)  # type: ignore[arg-type]
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=CHAT, max_tokens=50, messages=hi)  # type: ignore[arg-type]
    refused = caught.value.response
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert _rfc3339(refused.headers["anthropic-ratelimit-requests-reset"]) > now
    assert refused.json()["error"]["type"] == "rate_limit_error"

    # The OpenAI surfaces keep only OpenAI's names.
    plain = create_key(live.admin, KeyLimits(requests_per_minute=5))
    wait_for(lambda: live.http("GET", "/v1/key", plain).status_code == 200)
    chat = live.client(plain).chat.completions.with_raw_response.create(model=CHAT, messages=hi)  # type: ignore[arg-type]
    assert "x-ratelimit-limit-requests" in chat.headers
    assert not any(name.startswith("anthropic-ratelimit") for name in chat.headers)
