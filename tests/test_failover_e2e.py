"""Chaos tests: failover across providers, timeouts, circuit breaking and billing under failure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import require_service
from tests.fakes.common import ThreadedServer
from tests.fakes.openai_server import Behaviour, FakeOpenAI, FakeOpenAIServer
from tests.harness import Admin, GatewayServer, gateway_settings, wait_for

MODEL = "chaos/model"
BACKUP_MODEL = "chaos/backup-model"
CHEAP = {"input": "1", "output": "2"}
DEAR = {"input": "2", "output": "4"}


@dataclass
class Chaos:
    gateway: GatewayServer
    a: FakeOpenAI  # the cheaper provider, tried first
    b: FakeOpenAI
    admin: Admin
    key: str
    workspace_id: str

    def client(self) -> openai.OpenAI:
        return self.gateway.openai(self.key)

    def record(self, generation_id: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.gateway.base_url}/v1/generations?id={generation_id}",
            headers={"authorization": f"Bearer {self.key}"},
        )
        return response.json()["data"]  # type: ignore[no-any-return]


def chaos_config(a_url: str, b_url: str, **routing: Any) -> dict[str, Any]:
    timeouts = {"connect": 1, "first_byte": 0.6, "idle": 0.6, "read": 0.6}
    return {
        "providers": {
            "a": {"type": "openai_compatible", "base_url": a_url, "api_key": "sk-fake", "timeouts": timeouts},
            "b": {"type": "openai_compatible", "base_url": b_url, "api_key": "sk-fake", "timeouts": timeouts},
        },
        "models": {
            MODEL: {
                "providers": [
                    {"provider": "b", "model": "b-model", "price": DEAR},
                    {"provider": "a", "model": "a-model", "price": CHEAP},
                ]
            },
            BACKUP_MODEL: {"providers": [{"provider": "b", "model": "b-backup", "price": DEAR}]},
        },
        "routing": {"breaker": {"failure_threshold": 3, "open_s": 1.0, "window_s": 30}, **routing},
    }


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    with (
        FakeOpenAIServer(FakeOpenAI(api_key="sk-fake")) as a,
        FakeOpenAIServer(FakeOpenAI(api_key="sk-fake")) as b,
    ):
        settings = gateway_settings(tmp_path, chaos_config(a.base_url, b.base_url))
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(1_000_000_000)
        workspace_id = admin.workspace_id()
        with GatewayServer(settings) as gateway:
            wait_for(lambda: gateway.state.wallets.snapshot(workspace_id)["available"] > 0)
            yield Chaos(gateway, a.fake, b.fake, admin, key, workspace_id)


def _chat(chaos: Chaos, **kwargs: Any) -> Any:
    return chaos.client().chat.completions.with_raw_response.create(
        model=kwargs.pop("model", MODEL),
        messages=[{"role": "user", "content": "Reply with: served"}],
        **kwargs,
    )


def _spent(chaos: Chaos) -> int:
    wait_for(lambda: chaos.gateway.state.writer.queue_depth == 0)
    return int(chaos.admin.run(lambda store: store.get_wallet(chaos.workspace_id)).spent_total_nano)


@pytest.mark.parametrize(
    "failure",
    [
        Behaviour(status=500),
        Behaviour(status=503),
        Behaviour(status=429, headers={"retry-after": "3"}),
        Behaviour(delay=2),
    ],
    ids=["500", "503", "429", "hang"],
)
def test_failed_attempt_fails_over_and_only_the_serving_one_is_billed(
    chaos: Chaos, failure: Behaviour
) -> None:
    chaos.a.enqueue(failure)
    started = time.monotonic()
    raw = _chat(chaos)
    assert time.monotonic() - started < 3, "a hang costs at most the first-byte timeout"
    assert raw.parse().choices[0].message.content == "served"
    assert raw.headers["x-aistats-provider"] == "b" and raw.headers["x-aistats-attempts"] == "2"
    record = chaos.record(raw.headers["x-generation-id"])
    assert [(a["provider"], a["outcome"]) for a in record["attempts"]] == [
        ("a", "UpstreamTimeout" if failure.delay else "UpstreamStatusError"),
        ("b", "ok"),
    ]
    assert record["provider"] == "b" and record["status"] == "completed"
    assert record["attempts"][0]["status"] == (None if failure.delay else failure.status)
    assert record["attempts"][1]["status"] == 200
    usage = raw.parse().usage
    expected = usage.prompt_tokens * 2000 + usage.completion_tokens * 4000  # b's price, nano-USD
    assert record["cost_nanos"] == expected and _spent(chaos) == expected, "one charge, at b's price"


def test_unreachable_provider_fails_over(tmp_path: Path) -> None:
    with FakeOpenAIServer(FakeOpenAI(api_key="sk-fake")) as b:
        settings = gateway_settings(tmp_path, chaos_config("http://127.0.0.1:9/v1", b.base_url))
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(1_000_000_000)
        with GatewayServer(settings) as gateway:
            wait_for(lambda: gateway.state.wallets.snapshot(admin.workspace_id())["available"] > 0)
            raw = gateway.openai(key).chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "Reply with: served"}]
            )
    assert raw.headers["x-aistats-provider"] == "b"


def test_callers_4xx_is_returned_without_failover(chaos: Chaos) -> None:
    chaos.a.enqueue(
        Behaviour(status=400, error={"error": {"message": "bad temperature", "type": "invalid_request"}})
    )
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(chaos)
    assert "bad temperature" in caught.value.message
    assert chaos.b.requests == [], "the caller's mistake is not retried elsewhere"


def test_last_candidates_429_reaches_the_client_with_its_retry_after(chaos: Chaos) -> None:
    chaos.a.enqueue(Behaviour(status=429, headers={"retry-after": "7"}))
    chaos.b.enqueue(Behaviour(status=429, headers={"retry-after": "11"}))
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(chaos)
    assert caught.value.response.headers["retry-after"] == "11"
    assert _spent(chaos) == 0


def test_allow_fallbacks_false_tries_only_the_first(chaos: Chaos) -> None:
    chaos.a.enqueue(Behaviour(status=500))
    with pytest.raises(openai.InternalServerError):
        _chat(chaos, extra_body={"provider": {"allow_fallbacks": False}})
    assert chaos.b.requests == []


def test_provider_order_is_obeyed(chaos: Chaos) -> None:
    raw = _chat(chaos, extra_body={"provider": {"order": ["b", "a"]}})
    assert raw.headers["x-aistats-provider"] == "b" and chaos.a.requests == []


def test_models_fallback_bills_and_names_the_model_that_served(chaos: Chaos) -> None:
    chaos.a.enqueue(Behaviour(status=500))
    chaos.b.enqueue(Behaviour(status=500))
    raw = _chat(chaos, extra_body={"models": [BACKUP_MODEL]})  # a and b fail MODEL; b serves the backup
    completion = raw.parse()
    assert completion.model == BACKUP_MODEL
    record = chaos.record(raw.headers["x-generation-id"])
    assert record["model"] == BACKUP_MODEL and record["upstream_model"] == "b-backup"
    assert [a["provider"] for a in record["attempts"]] == ["a", "b", "b"]
    usage = completion.usage
    assert record["cost_nanos"] == usage.prompt_tokens * 2000 + usage.completion_tokens * 4000


def test_stream_fails_over_before_the_first_byte(chaos: Chaos) -> None:
    chaos.a.enqueue(Behaviour(drop_after_chunks=0))
    chunks = list(
        chaos.client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Reply with: one two"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two"
    assert len(chaos.b.requests) == 1


def test_stream_dropped_after_the_first_byte_is_an_error_event_and_not_billed(chaos: Chaos) -> None:
    chaos.a.enqueue(Behaviour(text="one two three four five", drop_after_chunks=3))
    stream = chaos.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    generation_id = stream.headers["x-generation-id"]
    with pytest.raises(openai.APIError):
        list(stream.parse())
    assert chaos.b.requests == [], "no failover once the client has bytes"
    record = wait_for(lambda: chaos.record(generation_id))
    assert record["status"] == "failed" and record["cost_nanos"] == 0
    assert _spent(chaos) == 0


def test_repeated_failures_open_the_circuit_then_a_probe_closes_it(chaos: Chaos) -> None:
    chaos.a.default = Behaviour(status=500)
    for _ in range(3):
        _chat(chaos)
    assert len(chaos.a.requests) == 3
    raw = _chat(chaos)  # a's circuit is open now: the plan puts it last, b serves, a is not called
    assert len(chaos.a.requests) == 3
    attempts = chaos.record(raw.headers["x-generation-id"])["attempts"]
    assert [(a["provider"], a["outcome"]) for a in attempts] == [("b", "ok")]
    with pytest.raises(openai.APIStatusError) as refused:  # only a may serve, and its circuit is open
        _chat(chaos, extra_body={"provider": {"only": ["a"]}})
    assert refused.value.status_code == 503 and len(chaos.a.requests) == 3
    chaos.a.default = Behaviour()
    time.sleep(1.1)  # open_s elapsed: one probe goes to a, succeeds, and closes the circuit
    assert _chat(chaos).headers["x-aistats-provider"] == "a"
    assert _chat(chaos).headers["x-aistats-provider"] == "a"


def test_flaky_provider_every_request_succeeds_and_is_billed_once(chaos: Chaos) -> None:
    for index in range(12):
        chaos.a.enqueue(Behaviour(status=502) if index % 2 else Behaviour())
    costs = 0
    for _ in range(12):
        raw = _chat(chaos)
        assert raw.parse().choices[0].message.content == "served"
        costs += chaos.record(raw.headers["x-generation-id"])["cost_nanos"]
    assert _spent(chaos) == costs


def test_all_circuits_open_is_503_with_retry_after(tmp_path: Path) -> None:
    with FakeOpenAIServer(FakeOpenAI(api_key="sk-fake", default=Behaviour(status=500))) as a:
        config = chaos_config(a.base_url, a.base_url)
        config["models"] = {MODEL: {"providers": [{"provider": "a", "model": "a-model", "price": CHEAP}]}}
        settings = gateway_settings(tmp_path, config)
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(1_000_000_000)
        with GatewayServer(settings) as gateway:
            wait_for(lambda: gateway.state.wallets.snapshot(admin.workspace_id())["available"] > 0)
            client = gateway.openai(key)
            for _ in range(3):
                with pytest.raises(openai.InternalServerError):
                    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 503 and caught.value.response.headers["retry-after"] == "1"
    assert len(a.fake.requests) == 3


def test_two_instances_sharing_redis_see_the_same_breaker_state(tmp_path: Path) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    client = redis.Redis(host="127.0.0.1", port=6379)
    for stale in client.scan_iter("aistats:health:*"):
        client.delete(stale)
    with (
        FakeOpenAIServer(FakeOpenAI(api_key="sk-fake", default=Behaviour(status=500))) as a,
        FakeOpenAIServer(FakeOpenAI(api_key="sk-fake")) as b,
    ):
        config = chaos_config(a.base_url, b.base_url)
        config["routing"]["breaker"]["open_s"] = 30
        settings = gateway_settings(tmp_path, config, redis_url="redis://127.0.0.1:6379/0")
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(1_000_000_000)
        with GatewayServer(settings) as first, GatewayServer(settings) as second:
            wait_for(lambda: second.state.wallets.snapshot(admin.workspace_id())["available"] > 0)
            for _ in range(3):  # a fails three times behind the first instance: its circuit opens
                first.openai(key).chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "x"}]
                )
            calls_to_a = len(a.fake.requests)
            wait_for(lambda: second.state.health.snapshot("a", "a-model").state == "open", timeout=2)
            with pytest.raises(openai.APIStatusError) as caught:
                second.openai(key).chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "x"}],
                    extra_body={"provider": {"only": ["a"]}},
                )
    assert caught.value.status_code == 503
    assert len(a.fake.requests) == calls_to_a, "the second instance never called the open provider"
    for stale in client.scan_iter("aistats:health:*"):
        client.delete(stale)


class GarbageServer(ThreadedServer):
    """A provider that answers 200 with a body that is not JSON."""

    label = "garbage"

    def build(self) -> Starlette:
        async def garbage(request: Request) -> Response:
            return Response(b"<html>upstream proxy error</html>", media_type="text/html")

        return Starlette(routes=[Route("/v1/chat/completions", garbage, methods=["POST"])])


def test_malformed_answer_counts_as_a_provider_failure_and_fails_over(tmp_path: Path) -> None:
    with GarbageServer() as garbage, FakeOpenAIServer(FakeOpenAI(api_key="sk-fake")) as b:
        settings = gateway_settings(tmp_path, chaos_config(garbage.root_url + "/v1", b.base_url))
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(1_000_000_000)
        with GatewayServer(settings) as gateway:
            wait_for(lambda: gateway.state.wallets.snapshot(admin.workspace_id())["available"] > 0)
            raw = gateway.openai(key).chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "Reply with: served"}]
            )
            failures = gateway.state.health.snapshot("a", "a-model").failures_in_window
    assert raw.headers["x-aistats-provider"] == "b" and raw.parse().choices[0].message.content == "served"
    assert failures == 1, "an unreadable answer counts against the provider"
