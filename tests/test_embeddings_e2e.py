"""``POST /v1/embeddings`` end to end: the ``openai`` SDK against the gateway, in front of fake
OpenAI, OpenAI-compatible and Gemini providers (each fake checked with its own official SDK)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import types

from aistats_gateway.api.errors import GatewayError
from aistats_gateway.formats import gemini_embeddings, openai_embeddings
from aistats_gateway.pipeline.tokens import count_tokens
from tests.fakes.embedding_vectors import embedding_vector
from tests.fakes.gemini_embeddings import MAX_BATCH
from tests.fakes.gemini_server import Behaviour as GeminiBehaviour
from tests.fakes.gemini_server import FakeGemini, FakeGeminiServer
from tests.fakes.openai_embeddings import float32_base64
from tests.fakes.openai_server import Behaviour, FakeOpenAI, FakeOpenAIServer
from tests.harness import Admin, GatewayServer, gateway_settings, wait_for

OPENAI_KEY = "sk-fake"
GEMINI_KEY = "gm-fake"
COMPAT = "test/compat-embed"
FAILOVER = "test/embed-failover"
MISROUTED = "test/embed-on-anthropic"
SMALL = "openai/text-embedding-3-small"  # built-in catalog models, routed to the fakes
GEMINI = "google/gemini-embedding-001"
CHAT = "test/chat"
# (gateway model, provider name, provider's model id, USD per 1M input tokens)
PROVIDERS = {
    "openai": (SMALL, "openai", "text-embedding-3-small", "0.02"),
    "openai_compatible": (COMPAT, "compat", "compat-embed", "0.05"),
    "google": (GEMINI, "google-ai-studio", "gemini-embedding-001", "0.15"),
}


@dataclass
class Stack:
    gateway: GatewayServer
    openai_fake: FakeOpenAI
    gemini_fake: FakeGemini
    key: str
    broke_key: str  # a key of a workspace without credits

    def client(self, key: str | None = None) -> openai.OpenAI:
        return self.gateway.openai(key or self.key)

    def record(self, generation_id: str) -> dict[str, Any]:
        def fetch() -> dict[str, Any] | None:
            response = httpx.get(
                f"{self.gateway.base_url}/v1/generations",
                params={"id": generation_id},
                headers={"authorization": f"Bearer {self.key}"},
            )
            return response.json()["data"] if response.status_code == 200 else None

        record: dict[str, Any] = wait_for(fetch)
        return record


def _config(openai_url: str, gemini_url: str) -> dict[str, Any]:
    embeddings = {"kind": "embeddings"}
    return {
        "providers": {
            "openai": {"type": "openai", "base_url": openai_url, "api_key": OPENAI_KEY},
            "compat": {"type": "openai_compatible", "base_url": openai_url, "api_key": OPENAI_KEY},
            "google-ai-studio": {"type": "google", "base_url": gemini_url, "api_key": GEMINI_KEY},
            "anthropic": {"type": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "sk-never-used"},
        },
        "models": {
            COMPAT: {
                **embeddings,
                "providers": [
                    {"provider": "compat", "model": "compat-embed", "price": {"input": "0.05", "output": "0"}}
                ],
            },
            FAILOVER: {  # equal prices: Gemini first (catalog order), then OpenAI
                **embeddings,
                "providers": [
                    {
                        "provider": "google-ai-studio",
                        "model": "gemini-embedding-001",
                        "price": {"input": "0.15", "output": "0"},
                    },
                    {
                        "provider": "openai",
                        "model": "text-embedding-3-small",
                        "price": {"input": "0.15", "output": "0"},
                    },
                ],
            },
            MISROUTED: {
                **embeddings,
                "providers": [
                    {"provider": "anthropic", "model": "claude-x", "price": {"input": "1", "output": "0"}}
                ],
            },
            CHAT: {
                "providers": [
                    {"provider": "openai", "model": "gpt-4o-mini", "price": {"input": "1", "output": "2"}}
                ]
            },
        },
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp_path = tmp_path_factory.mktemp("embeddings")
    openai_fake, gemini_fake = FakeOpenAI(api_key=OPENAI_KEY), FakeGemini(api_key=GEMINI_KEY)
    with FakeOpenAIServer(openai_fake) as openai_server, FakeGeminiServer(gemini_fake) as gemini_server:
        settings = gateway_settings(tmp_path, _config(openai_server.base_url, gemini_server.base_url))
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(10 * 10**9)
        broke_key, _ = admin.create_key(workspace="broke")
        with GatewayServer(settings) as gateway:
            yield Stack(gateway, openai_fake, gemini_fake, key, broke_key)


@pytest.fixture
def live(stack: Stack) -> Stack:
    stack.openai_fake.reset()
    stack.gemini_fake.reset()
    return stack


def _cost_usd(tokens: int, price_per_million: str) -> float:
    """The hand-computed price: tokens x USD per 1M tokens, rounded up to the nano-USD."""
    exact = Decimal(tokens) * Decimal(price_per_million) / Decimal(1_000_000)
    return float(exact.quantize(Decimal("0.000000001"), rounding=ROUND_CEILING))


def _fake_tokens(texts: list[str]) -> int:
    """The fake OpenAI server's documented token rule for text inputs."""
    return sum(len(text) // 4 + 1 for text in texts)


# --- the fakes speak the real wire formats ------------------------------------------------------


def test_fake_openai_embeddings_answer_the_openai_sdk() -> None:
    with FakeOpenAIServer(FakeOpenAI(api_key=OPENAI_KEY)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=OPENAI_KEY, max_retries=0)
        default = client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"])
        floats = client.embeddings.create(
            model="text-embedding-3-small", input=["a cat", "a dog"], encoding_format="float"
        )
        assert server.fake.requests[0].body["encoding_format"] == "base64", "the SDK asks base64 by default"
        assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
        assert default.data[1].embedding == embedding_vector("text-embedding-3-small", "a dog", 1536)
        assert default.usage.prompt_tokens == _fake_tokens(["a cat", "a dog"])
        short = client.embeddings.create(model="text-embedding-3-large", input="x", dimensions=8)
        assert len(short.data[0].embedding) == 8
        tokens = client.embeddings.create(
            model="text-embedding-3-small", input=[[1, 2, 3]], encoding_format="float"
        )
        assert tokens.usage.prompt_tokens == 3
        with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
            client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)
        with pytest.raises(openai.BadRequestError, match="input"):
            client.embeddings.create(model="text-embedding-3-small", input="")


def test_fake_gemini_embeddings_answer_the_google_genai_sdk() -> None:
    with FakeGeminiServer(FakeGemini(api_key=GEMINI_KEY)) as server:
        options = types.HttpOptions(base_url=server.base_url, api_version="v1beta", timeout=10_000)
        with genai.Client(api_key=GEMINI_KEY, http_options=options) as client:
            result = client.models.embed_content(
                model="gemini-embedding-001",
                contents=["a cat", "a dog"],
                config=types.EmbedContentConfig(output_dimensionality=8),
            )
        assert server.fake.requests[-1].path.endswith("/models/gemini-embedding-001:batchEmbedContents")
        assert [e.values for e in result.embeddings or []] == [
            embedding_vector("gemini-embedding-001", text, 8) for text in ("a cat", "a dog")
        ]
        too_many = {
            "requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "x"}]}}
                for _ in range(MAX_BATCH + 1)
            ]
        }
        url = f"{server.base_url}/v1beta/models/gemini-embedding-001:batchEmbedContents"
        refused = httpx.post(url, json=too_many, headers={"x-goog-api-key": GEMINI_KEY})
        assert refused.status_code == 400 and refused.json()["error"]["status"] == "INVALID_ARGUMENT"


# --- every provider type, both encodings ---------------------------------------------------------


@pytest.mark.parametrize("encoding", ["sdk-default-base64", "float"])
@pytest.mark.parametrize("provider_type", list(PROVIDERS))
def test_embeddings_through_the_openai_sdk(live: Stack, provider_type: str, encoding: str) -> None:
    model, provider, upstream_model, price = PROVIDERS[provider_type]
    texts = ["The quick brown fox", "jumps over the lazy dog"]
    create = live.client().embeddings.with_raw_response.create
    if encoding == "float":
        raw = create(model=model, input=texts, dimensions=16, encoding_format="float")
    else:
        raw = create(model=model, input=texts, dimensions=16)  # the SDK asks base64 and decodes it
    result = raw.parse()
    assert raw.headers["x-generation-id"].startswith("gen_")
    assert raw.headers["x-aistats-provider"] == provider
    assert result.model == model
    assert [d.index for d in result.data] == [0, 1]
    assert [d.embedding for d in result.data] == [
        embedding_vector(upstream_model, text, 16) for text in texts
    ]

    if provider_type == "google":
        sent = live.gemini_fake.requests[-1]
        assert sent.path.endswith("/models/gemini-embedding-001:batchEmbedContents")
        assert [r["outputDimensionality"] for r in sent.body["requests"]] == [16, 16]
        assert sent.body["requests"][0]["model"] == "models/gemini-embedding-001"
        tokens = sum(count_tokens(text) for text in texts)  # Gemini reports none: the gateway counts
        assert tokens == 4 + 6  # cl100k: "The| quick| brown| fox" and "j|umps| over| the| lazy| dog"
    else:
        sent = live.openai_fake.requests[-1]
        assert sent.body["model"] == upstream_model and sent.body["dimensions"] == 16
        assert sent.body["encoding_format"] == ("float" if encoding == "float" else "base64")
        tokens = _fake_tokens(texts)
    assert result.usage.prompt_tokens == result.usage.total_tokens == tokens
    assert result.usage.model_extra is not None
    assert result.usage.model_extra["cost"] == _cost_usd(tokens, price)

    record = live.record(raw.headers["x-generation-id"])
    assert record["endpoint"] == "embeddings" and record["status"] == "completed"
    assert record["model"] == model and record["provider"] == provider
    assert record["upstream_model"] == upstream_model
    assert record["usage"]["input_tokens"] == tokens and record["usage"]["output_tokens"] == 0
    assert record["cost"] == _cost_usd(tokens, price)
    assert record["usage_estimated"] is (provider_type == "google")


def test_base64_answer_is_little_endian_float32_bytes(live: Stack) -> None:
    response = httpx.post(
        f"{live.gateway.base_url}/v1/embeddings",
        json={"model": GEMINI, "input": "hello", "dimensions": 4, "encoding_format": "base64"},
        headers={"authorization": f"Bearer {live.key}"},
    )
    assert response.status_code == 200, response.text
    encoded = response.json()["data"][0]["embedding"]
    expected = embedding_vector("gemini-embedding-001", "hello", 4)
    assert encoded == float32_base64(expected)
    assert len(base64.b64decode(encoded)) == 4 * 4


def test_single_string_input_gets_the_models_default_dimensions(live: Stack) -> None:
    result = live.client().embeddings.create(model=SMALL, input="one text")
    assert len(result.data) == 1 and len(result.data[0].embedding) == 1536


def test_a_server_that_ignores_encoding_format_is_converted_both_ways(live: Stack) -> None:
    client = live.client()
    live.openai_fake.enqueue(Behaviour(embedding_encoding="float"))
    from_floats = client.embeddings.create(model=COMPAT, input="abc", dimensions=8)  # asks base64
    live.openai_fake.enqueue(Behaviour(embedding_encoding="base64"))
    from_base64 = client.embeddings.create(model=COMPAT, input="abc", dimensions=8, encoding_format="float")
    expected = embedding_vector("compat-embed", "abc", 8)
    assert from_floats.data[0].embedding == expected
    assert from_base64.data[0].embedding == expected


def test_a_provider_that_reports_no_usage_is_counted_and_marked_estimated(live: Stack) -> None:
    live.openai_fake.enqueue(Behaviour(omit_usage=True))
    raw = live.client().embeddings.with_raw_response.create(model=COMPAT, input="hello world", dimensions=4)
    result = raw.parse()
    assert result.usage.prompt_tokens == 2  # cl100k: "hello", " world"
    record = live.record(raw.headers["x-generation-id"])
    assert record["usage_estimated"] is True and record["usage"]["input_tokens"] == 2


def test_more_inputs_than_one_gemini_batch_are_sent_in_several_calls(live: Stack) -> None:
    texts = [f"text number {i}" for i in range(MAX_BATCH + 20)]
    result = live.client().embeddings.create(model=GEMINI, input=texts, dimensions=4, encoding_format="float")
    assert [d.embedding for d in result.data] == [
        embedding_vector("gemini-embedding-001", t, 4) for t in texts
    ]
    calls = [r for r in live.gemini_fake.requests if r.path.endswith(":batchEmbedContents")]
    assert [len(r.body["requests"]) for r in calls] == [MAX_BATCH, 20]


# --- token-id input ------------------------------------------------------------------------------


def test_token_ids_pass_through_to_openai(live: Stack) -> None:
    result = live.client().embeddings.create(model=SMALL, input=[[10, 20, 30], [40]], dimensions=4)
    assert live.openai_fake.requests[-1].body["input"] == [[10, 20, 30], [40]]
    assert result.usage.prompt_tokens == 4
    assert result.data[0].embedding == embedding_vector("text-embedding-3-small", [10, 20, 30], 4)


def test_token_ids_for_gemini_are_a_clear_400(live: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        live.client().embeddings.create(model=GEMINI, input=[1, 2, 3])
    body = caught.value.body
    assert isinstance(body, dict)
    assert "embeds text only" in body["message"] and "token ids" in body["message"]
    assert body["code"] == "unsupported_input" and body["param"] == "input"
    assert live.gemini_fake.requests == []


def test_token_ids_skip_a_gemini_route_and_use_the_next(live: Stack) -> None:
    raw = live.client().embeddings.with_raw_response.create(model=FAILOVER, input=[5, 6], dimensions=4)
    assert raw.headers["x-aistats-provider"] == "openai"
    record = live.record(raw.headers["x-generation-id"])
    assert [(a["provider"], a["outcome"]) for a in record["attempts"]] == [
        ("google-ai-studio", "token_input_unsupported"),
        ("openai", "ok"),
    ]


# --- failover and errors -------------------------------------------------------------------------


def test_failover_from_a_failing_provider_to_a_working_one(live: Stack) -> None:
    live.gemini_fake.enqueue(GeminiBehaviour(status=503))
    raw = live.client().embeddings.with_raw_response.create(
        model=FAILOVER, input="fail me over", dimensions=4
    )
    result = raw.parse()
    assert raw.headers["x-aistats-provider"] == "openai"
    assert result.data[0].embedding == embedding_vector("text-embedding-3-small", "fail me over", 4)
    tokens = _fake_tokens(["fail me over"])
    assert result.usage.model_extra is not None and result.usage.model_extra["cost"] == _cost_usd(
        tokens, "0.15"
    )
    record = live.record(raw.headers["x-generation-id"])
    assert [(a["provider"], a["outcome"], a["status"]) for a in record["attempts"]] == [
        ("google-ai-studio", "UpstreamStatusError", 503),
        ("openai", "ok", 200),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": SMALL, "input": ""}, "'input' must not be an empty string"),
        ({"model": SMALL, "input": []}, "'input' must not be an empty list"),
        ({"model": SMALL, "input": ["ok", ""]}, "'input[1]' must not be an empty string"),
        ({"model": SMALL, "input": ["text", 3]}, "mixes kinds"),
        ({"model": SMALL}, "'input' is required"),
        ({"model": SMALL, "input": "x", "dimensions": 0}, "'dimensions' must be a positive integer"),
        ({"model": SMALL, "input": "x", "encoding_format": "int8"}, "'encoding_format' must be"),
        ({"input": "x"}, "'model' is required"),
    ],
)
def test_invalid_requests_are_400s(live: Stack, body: dict[str, Any], message: str) -> None:
    response = httpx.post(
        f"{live.gateway.base_url}/v1/embeddings", json=body, headers={"authorization": f"Bearer {live.key}"}
    )
    assert response.status_code == 400
    assert response.headers["x-generation-id"].startswith("gen_")
    error = response.json()
    assert error["reason"] == "validation_error" and message in error["error"]["message"]
    assert live.openai_fake.requests == []


def test_a_chat_model_is_refused_naming_its_endpoint(live: Stack) -> None:
    with pytest.raises(openai.BadRequestError, match="chat model; it is served by POST /v1/chat/completions"):
        live.client().embeddings.create(model=CHAT, input="x")


def test_an_embedding_model_on_chat_completions_names_the_embeddings_endpoint(live: Stack) -> None:
    with pytest.raises(openai.BadRequestError, match="served by POST /v1/embeddings"):
        live.client().chat.completions.create(model=SMALL, messages=[{"role": "user", "content": "hi"}])


def test_a_model_routed_to_a_provider_without_embeddings_is_503_naming_it(live: Stack) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        live.client().embeddings.create(model=MISROUTED, input="x")
    assert caught.value.status_code == 503
    body = caught.value.body
    assert (
        isinstance(body, dict)
        and "Provider 'anthropic' (type anthropic) has no embeddings endpoint" in body["message"]
    )


def test_an_unknown_model_is_404(live: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        live.client().embeddings.create(model="nobody/nothing", input="x")
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "model_not_found"


def test_insufficient_credits_is_402(live: Stack) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        live.client(live.broke_key).embeddings.create(model=SMALL, input="x")
    assert caught.value.status_code == 402
    assert live.openai_fake.requests == []


def test_unauthenticated_is_401(live: Stack) -> None:
    with pytest.raises(openai.AuthenticationError):
        live.client("aistats_v1_sk_nokeyhere000_" + "x" * 40).embeddings.create(model=SMALL, input="x")


# --- the wire helpers on their own ---------------------------------------------------------------


def test_base64_helpers_round_trip_float32_little_endian() -> None:
    vector = embedding_vector("m", "x", 5)
    encoded = openai_embeddings.to_base64(vector)
    assert base64.b64decode(encoded) == struct.pack("<5f", *vector)
    assert openai_embeddings.from_base64(encoded) == vector


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (b"not json", "invalid JSON"),
        (b'{"data": [{"index": 0, "embedding": [0.1]}]}', "1 embeddings for 2 inputs"),
        (b'{"data": [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}]}', "bad index"),
        (b'{"data": [{"index": 0, "embedding": 1}, {"index": 1, "embedding": [0.2]}]}', "not a vector"),
    ],
)
def test_an_unreadable_openai_reply_is_a_provider_error(reply: bytes, problem: str) -> None:
    with pytest.raises(GatewayError, match=problem) as caught:
        openai_embeddings.read_reply(reply, 2)
    assert caught.value.reason == "provider_error"  # so the attempt loop fails over


def test_an_unreadable_gemini_reply_is_a_provider_error() -> None:
    with pytest.raises(GatewayError, match="1 embeddings for 2 inputs") as caught:
        gemini_embeddings.read_batch(b'{"embeddings": [{"values": [0.5]}]}', 2)
    assert caught.value.reason == "provider_error"
    with pytest.raises(GatewayError, match="not valid base64"):
        openai_embeddings.encode_vector("%%%", "float")


def test_openai_replies_are_put_in_index_order() -> None:
    reply = (
        b'{"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}],'
        b' "usage": {"prompt_tokens": 7}}'
    )
    embedded = openai_embeddings.read_reply(reply, 2)
    assert embedded.vectors == [[1.0], [2.0]] and embedded.prompt_tokens == 7
