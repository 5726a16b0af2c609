"""``POST /v1/images/generations`` end to end: the ``openai`` SDK against the gateway, in front of
a fake OpenAI (GPT Image passthrough, and a per-image priced model) and a fake Gemini API (Nano
Banana through ``generateContent``), each fake checked with its own official SDK."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests.fakes.gemini_images import IMAGE_TOKENS
from tests.fakes.gemini_server import Behaviour as GeminiBehaviour
from tests.fakes.gemini_server import FakeGemini, FakeGeminiServer
from tests.fakes.openai_images import OUTPUT_TOKENS
from tests.fakes.openai_server import Behaviour, FakeOpenAI, FakeOpenAIServer
from tests.fakes.png import prompt_colour, read_png_header
from tests.harness import Admin, GatewayServer, gateway_settings, wait_for

OPENAI_KEY = "sk-fake"
GEMINI_KEY = "gm-fake"
FLARE = "openai/gpt-image-2.6-flare"  # built-in catalog models, routed to the fakes
BANANA = "google/gemini-nano-banana-2.1"
PER_IMAGE = "test/per-image"
FAILOVER = "test/image-failover"
CROSS = "test/image-cross"
CHAT = "test/chat"


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

    def post(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.gateway.base_url}/v1/images/generations",
            json=body,
            headers={"authorization": f"Bearer {key or self.key}"},
        )


def _config(openai_url: str, gemini_url: str) -> dict[str, Any]:
    images = {"kind": "images", "max_output_tokens": 8192}
    return {
        "providers": {
            "openai": {"type": "openai", "base_url": openai_url, "api_key": OPENAI_KEY},
            "openai-backup": {"type": "openai", "base_url": openai_url, "api_key": OPENAI_KEY},
            "google-ai-studio": {"type": "google", "base_url": gemini_url, "api_key": GEMINI_KEY},
            "anthropic": {"type": "anthropic", "base_url": openai_url, "api_key": "sk-ant"},
        },
        "models": {
            PER_IMAGE: {  # a server that bills per image and reports no tokens
                **images,
                "providers": [
                    {
                        "provider": "openai",
                        "model": "imagine-1",
                        "price": {"input": "0", "output": "0", "image": "0.04"},
                    }
                ],
            },
            FAILOVER: {  # equal prices: openai first (catalog order), then openai-backup
                **images,
                "providers": [
                    {
                        "provider": name,
                        "model": "gpt-image-2.6-flare",
                        "price": {"input": "5", "output": "30"},
                    }
                    for name in ("openai", "openai-backup")
                ],
            },
            CROSS: {  # an anthropic route (cannot make images), then Gemini, then OpenAI
                **images,
                "providers": [
                    {"provider": "anthropic", "model": "claude", "price": {"input": "1", "output": "1"}},
                    {
                        "provider": "google-ai-studio",
                        "model": "gemini-nano-banana-2.1",
                        "price": {"input": "1", "output": "1"},
                    },
                    {
                        "provider": "openai",
                        "model": "gpt-image-2.6-flare",
                        "price": {"input": "1", "output": "1"},
                    },
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
    tmp_path = tmp_path_factory.mktemp("images")
    openai_fake, gemini_fake = FakeOpenAI(api_key=OPENAI_KEY), FakeGemini(api_key=GEMINI_KEY)
    with FakeOpenAIServer(openai_fake) as openai_server, FakeGeminiServer(gemini_fake) as gemini_server:
        settings = gateway_settings(tmp_path, _config(openai_server.base_url, gemini_server.base_url))
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(100 * 10**9)
        broke_key, _ = admin.create_key(workspace="broke")
        with GatewayServer(settings) as gateway:
            yield Stack(gateway, openai_fake, gemini_fake, key, broke_key)


@pytest.fixture
def live(stack: Stack) -> Stack:
    stack.openai_fake.reset()
    stack.gemini_fake.reset()
    return stack


def _usd(*parts: tuple[int, str]) -> float:
    """Hand-computed cost: the sum of count x USD price, rounded up to the nano-USD once."""
    exact = sum((Decimal(count) * Decimal(price) for count, price in parts), Decimal(0))
    return float(exact.quantize(Decimal("0.000000001"), rounding=ROUND_CEILING))


def _per_million(price: str) -> str:
    return str(Decimal(price) / Decimal(1_000_000))


def _png(b64: str | None) -> tuple[int, int, tuple[int, int, int]]:
    assert b64 is not None
    return read_png_header(base64.b64decode(b64))


# --- the fakes speak the real wire formats ------------------------------------------------------


def test_fake_openai_images_answer_the_openai_sdk() -> None:
    with FakeOpenAIServer(FakeOpenAI(api_key=OPENAI_KEY)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=OPENAI_KEY, max_retries=0)
        result = client.images.generate(model="gpt-image-2.6-flare", prompt="a red fox", n=2, quality="high")
        assert len(result.data or []) == 2
        assert _png(result.data[0].b64_json)[2] == prompt_colour("a red fox")  # type: ignore[index]
        assert result.usage is not None and result.usage.output_tokens == 2 * OUTPUT_TOKENS["high"]
        assert result.usage.input_tokens == len("a red fox") // 4 + 1 and result.quality == "high"
        hosted = client.images.generate(model="imagine-1", prompt="a fox", response_format="url")
        assert (hosted.data or [])[0].url and hosted.usage is None
        with pytest.raises(openai.BadRequestError, match="response_format"):
            client.images.generate(model="gpt-image-2.6-flare", prompt="x", response_format="url")


def test_fake_gemini_images_answer_the_google_genai_sdk() -> None:
    with FakeGeminiServer(FakeGemini(api_key=GEMINI_KEY)) as server:
        options = types.HttpOptions(base_url=server.base_url, api_version="v1beta", timeout=10_000)
        with genai.Client(api_key=GEMINI_KEY, http_options=options) as client:
            config = types.GenerateContentConfig(
                response_modalities=["IMAGE"],
                image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K"),
            )
            result = client.models.generate_content(
                model="gemini-nano-banana-2.1", contents="a banana", config=config
            )
            parts = result.candidates[0].content.parts  # type: ignore[index, union-attr]
            image = next(p.inline_data for p in parts or [] if p.inline_data is not None)
            assert image.mime_type == "image/png" and image.data is not None
            assert read_png_header(image.data)[2] == prompt_colour("a banana")
            usage = result.usage_metadata
            assert usage is not None and usage.candidates_token_count == IMAGE_TOKENS["2K"]
            details = usage.candidates_tokens_details or []
            assert [(d.modality, d.token_count) for d in details] == [(types.MediaModality.IMAGE, 1680)]
            bad = types.GenerateContentConfig(
                response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="7:3")
            )
            with pytest.raises(genai.errors.ClientError, match="aspect_ratio"):
                client.models.generate_content(model="gemini-nano-banana-2.1", contents="x", config=bad)


# --- OpenAI GPT Image, passthrough, billed per token --------------------------------------------


def test_gpt_image_through_the_gateway_is_billed_per_token(live: Stack) -> None:
    prompt = "A lighthouse at dusk, watercolour"
    raw = live.client().images.with_raw_response.generate(
        model=FLARE, prompt=prompt, n=2, quality="low", size="1024x1536", user="u-1"
    )
    result = raw.parse()
    assert raw.headers["x-generation-id"].startswith("gen_")
    assert raw.headers["x-aistats-provider"] == "openai"
    assert [_png(d.b64_json)[2] for d in result.data or []] == [prompt_colour(prompt)] * 2
    assert result.size == "1024x1536" and result.quality == "low" and result.output_format == "png"
    forwarded = live.openai_fake.requests[-1]
    assert forwarded.path == "/v1/images/generations"
    assert forwarded.body == {
        "model": "gpt-image-2.6-flare",
        "prompt": prompt,
        "n": 2,
        "quality": "low",
        "size": "1024x1536",
        "user": "u-1",
    }
    input_tokens, output_tokens = len(prompt) // 4 + 1, 2 * OUTPUT_TOKENS["low"]
    # Catalog card: text input $5 / 1M, image output $30 / 1M.
    expected = _usd((input_tokens, _per_million("5")), (output_tokens, _per_million("30")))
    assert result.usage is not None
    assert result.usage.input_tokens == input_tokens and result.usage.output_tokens == output_tokens
    assert result.usage.model_dump()["cost"] == expected
    record = live.record(raw.headers["x-generation-id"])
    assert record["endpoint"] == "images" and record["status"] == "completed"
    assert record["model"] == FLARE and record["upstream_model"] == "gpt-image-2.6-flare"
    assert record["usage"]["input_tokens"] == input_tokens
    assert record["usage"]["output_tokens"] == output_tokens
    assert record["cost"] == expected and record["usage_estimated"] is False


def test_gpt_image_refuses_a_url_response_format(live: Stack) -> None:
    response = live.post({"model": FLARE, "prompt": "x", "response_format": "url"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "response_format" and "base64" in error["message"]
    assert live.openai_fake.requests == [], "refused before any provider call"


def test_b64_json_response_format_is_not_forwarded_to_gpt_image(live: Stack) -> None:
    result = live.client().images.generate(model=FLARE, prompt="a cat", response_format="b64_json")
    assert _png((result.data or [])[0].b64_json)[2] == prompt_colour("a cat")
    assert "response_format" not in live.openai_fake.requests[-1].body


# --- Gemini image models, generateContent per image, billed per token ----------------------------


def test_gemini_image_through_the_gateway_is_one_call_per_image(live: Stack) -> None:
    prompt = "A banana in a spacesuit"
    raw = live.client().images.with_raw_response.generate(model=BANANA, prompt=prompt, n=2, size="1536x1024")
    result = raw.parse()
    assert raw.headers["x-aistats-provider"] == "google-ai-studio"
    assert [_png(d.b64_json)[2] for d in result.data or []] == [prompt_colour(prompt)] * 2
    assert result.output_format == "png"
    calls = live.gemini_fake.requests
    assert len(calls) == 2
    for call in calls:
        assert call.path == "/v1beta/models/gemini-nano-banana-2.1:generateContent"
        assert call.headers["x-goog-api-key"] == GEMINI_KEY
        assert call.body == {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": {
                "responseModalities": ["IMAGE"],
                "candidateCount": 1,
                "imageConfig": {"aspectRatio": "3:2", "imageSize": "2K"},
            },
        }
    prompt_tokens, image_tokens = len(prompt) // 4 + 1, IMAGE_TOKENS["2K"]
    # Catalog card: input $1.50 / 1M, image output $30 / 1M; two calls.
    expected = _usd((2 * prompt_tokens, _per_million("1.5")), (2 * image_tokens, _per_million("30")))
    assert result.usage is not None
    assert result.usage.input_tokens == 2 * prompt_tokens
    assert result.usage.output_tokens == 2 * image_tokens
    assert result.usage.output_tokens_details is not None
    assert result.usage.output_tokens_details.image_tokens == 2 * image_tokens
    assert result.usage.model_dump()["cost"] == expected
    record = live.record(raw.headers["x-generation-id"])
    assert record["endpoint"] == "images" and record["cost"] == expected
    assert record["provider"] == "google-ai-studio" and record["usage"]["output_tokens"] == 2 * image_tokens


def test_gemini_thinking_tokens_are_billed_at_the_text_output_price(live: Stack) -> None:
    live.gemini_fake.enqueue(GeminiBehaviour(thinking="Plan the layout", thoughts_tokens=40))
    result = live.client().images.generate(model=BANANA, prompt="a map", size="1024x1024")
    assert len(result.data or []) == 1
    assert "imageConfig" in live.gemini_fake.requests[-1].body["generationConfig"]
    assert live.gemini_fake.requests[-1].body["generationConfig"]["imageConfig"] == {"aspectRatio": "1:1"}
    prompt_tokens = len("a map") // 4 + 1
    expected = _usd(
        (prompt_tokens, _per_million("1.5")),
        (40, _per_million("7.5")),
        (IMAGE_TOKENS["1K"], _per_million("30")),
    )
    assert result.usage is not None and result.usage.model_dump()["cost"] == expected


def test_gemini_without_an_image_is_a_400_and_costs_nothing(live: Stack) -> None:
    live.gemini_fake.enqueue(GeminiBehaviour(finish_reason="IMAGE_SAFETY"))
    response = live.post({"model": BANANA, "prompt": "something blocked"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "no_image_generated" and "IMAGE_SAFETY" in body["error"]["message"]
    record = live.record(response.headers["x-generation-id"])
    assert record["status"] == "failed" and record["cost"] == 0
    assert record["attempts"][0]["outcome"] == "no_image"


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("quality", "high", "do not take 'quality'"),
        ("output_format", "webp", "do not take 'output_format'"),
        ("background", "transparent", "do not take 'background'"),
        ("response_format", "url", "not a URL"),
        ("size", "1000x300", "aspect ratio 10:3"),
        ("size", "8192x8192", "up to 4096 pixels"),
    ],
)
def test_gemini_refuses_what_it_cannot_do(live: Stack, field: str, value: str, says: str) -> None:
    response = live.post({"model": BANANA, "prompt": "x", field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert says in error["message"] and error["param"] == field
    assert live.gemini_fake.requests == []


# --- per-image pricing ---------------------------------------------------------------------------


def test_per_image_card_bills_each_image(live: Stack) -> None:
    raw = live.client().images.with_raw_response.generate(
        model=PER_IMAGE, prompt="a fox", n=3, response_format="url"
    )
    result = raw.parse()
    assert [d.url is not None and d.url.startswith("https://images.fake/") for d in result.data or []] == [
        True
    ] * 3
    assert (result.data or [])[0].revised_prompt == "a fox"
    assert live.openai_fake.requests[-1].body["response_format"] == "url"
    assert result.usage is not None and result.usage.model_dump()["cost"] == _usd((3, "0.04"))
    record = live.record(raw.headers["x-generation-id"])
    assert record["cost_nanos"] == 120_000_000 and record["usage_estimated"] is True


# --- failover --------------------------------------------------------------------------------------


def test_a_failing_provider_fails_over_to_the_next(live: Stack) -> None:
    live.openai_fake.enqueue(Behaviour(status=503))
    raw = live.client().images.with_raw_response.generate(model=FAILOVER, prompt="retry me")
    assert raw.headers["x-aistats-provider"] == "openai-backup"
    assert raw.headers["x-aistats-attempts"] == "2"
    record = live.record(raw.headers["x-generation-id"])
    assert [(a["provider"], a["status"]) for a in record["attempts"]] == [
        ("openai", 503),
        ("openai-backup", 200),
    ]
    output = OUTPUT_TOKENS["medium"]
    expected = _usd((len("retry me") // 4 + 1, _per_million("5")), (output, _per_million("30")))
    assert record["cost"] == expected


def test_failover_across_wires_skips_a_provider_that_makes_no_images(live: Stack) -> None:
    live.gemini_fake.enqueue(GeminiBehaviour(status=500))
    raw = live.client().images.with_raw_response.generate(model=CROSS, prompt="anywhere")
    assert raw.headers["x-aistats-provider"] == "openai"
    record = live.record(raw.headers["x-generation-id"])
    outcomes = [(a["provider"], a["outcome"]) for a in record["attempts"]]
    assert outcomes == [
        ("anthropic", "no_images_endpoint"),
        ("google-ai-studio", "UpstreamStatusError"),
        ("openai", "ok"),
    ]


def test_one_failed_gemini_call_of_several_fails_the_attempt(live: Stack) -> None:
    live.gemini_fake.enqueue(GeminiBehaviour(), GeminiBehaviour(status=400))
    response = live.post({"model": BANANA, "prompt": "two please", "n": 2})
    assert response.status_code == 400
    record = live.record(response.headers["x-generation-id"])
    assert record["status"] == "failed" and record["cost"] == 0


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": FLARE, "prompt": "x", "n": 0}, "n"),
        ({"model": FLARE, "prompt": "x", "n": 11}, "n"),
        ({"model": FLARE, "prompt": "x", "n": "2"}, "n"),
        ({"model": FLARE, "prompt": "x", "size": "big"}, "size"),
        ({"model": FLARE, "prompt": ""}, "prompt"),
        ({"model": FLARE}, "prompt"),
        ({"model": FLARE, "prompt": "x", "stream": True}, "stream"),
        ({"model": FLARE, "prompt": "x", "response_format": "png"}, "response_format"),
        ({"prompt": "x"}, "model"),
    ],
)
def test_bad_requests_are_400_naming_the_field(live: Stack, body: dict[str, Any], param: str) -> None:
    response = live.post(body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["error"]["param"] == param and payload["reason"] == "validation_error"
    assert response.headers["x-generation-id"].startswith("gen_")
    assert live.openai_fake.requests == []


def test_a_chat_model_is_refused_naming_the_chat_paths(live: Stack) -> None:
    with pytest.raises(openai.BadRequestError, match="is a chat model; it is served by POST /v1/chat"):
        live.client().images.generate(model=CHAT, prompt="x")


def test_an_image_model_is_refused_on_chat(live: Stack) -> None:
    with pytest.raises(openai.BadRequestError, match="/v1/images/generations"):
        live.client().chat.completions.create(model=FLARE, messages=[{"role": "user", "content": "x"}])


def test_unknown_model_is_404(live: Stack) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        live.client().images.generate(model="no/such-image-model", prompt="x")


def test_without_credits_it_is_402_and_no_call_is_made(live: Stack) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        live.client(live.broke_key).images.generate(model=FLARE, prompt="x")
    assert caught.value.status_code == 402
    assert "Insufficient credits" in caught.value.message
    assert live.openai_fake.requests == []


def test_missing_key_is_401(live: Stack) -> None:
    response = httpx.post(
        f"{live.gateway.base_url}/v1/images/generations", json={"model": FLARE, "prompt": "x"}
    )
    assert response.status_code == 401 and response.json()["reason"] == "authentication_error"


def reservation_amount(plan: Any, request: Any, body_bytes: int) -> int:
    """What the images endpoint holds for ``request`` (no BYOK keys)."""
    from aistats_gateway.api.images import worst_case
    from aistats_gateway.api.whole_reply import reservation
    from aistats_gateway.byok.cache import NO_CREDENTIALS
    from aistats_gateway.byok.fee import NO_FEE

    return reservation(plan, lambda c: worst_case(c, request, body_bytes), NO_CREDENTIALS, NO_FEE)


def test_the_reservation_covers_n_images_at_the_dearest_meter(live: Stack) -> None:
    from aistats_gateway.formats.openai_images import parse_image_request

    raw = b'{"model": "openai/gpt-image-2.6-flare", "prompt": "x", "n": 3}'
    request = parse_image_request(raw)
    plan = live.gateway.state.router.plan(request.body, "images")
    # 3 images x 32768 output tokens (the catalog's max_output_tokens) at $30 / 1M, input at
    # most the body's bytes at the dearest input meter ($8 / 1M, image input).
    assert plan.candidates[0].route.max_output_tokens == 32768
    expected_usd = Decimal(3 * 32768 * 30 + len(raw) * 8) / Decimal(1_000_000)
    assert reservation_amount(plan, request, len(raw)) == int(expected_usd * 10**9)


def test_a_per_image_reservation_holds_every_image(live: Stack) -> None:
    from aistats_gateway.formats.openai_images import parse_image_request

    request = parse_image_request(b'{"model": "test/per-image", "prompt": "x", "n": 4}')
    plan = live.gateway.state.router.plan(request.body, "images")
    assert reservation_amount(plan, request, 10) == 4 * 40_000_000  # tokens are free on this card
