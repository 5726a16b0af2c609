"""Price cards with meters and tiers: evaluation, reservations, config validation, usage parsing,
and one end-to-end bill through the gateway and the fake Anthropic provider."""

from __future__ import annotations

import random
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from aistats_gateway.canonical import Usage
from aistats_gateway.catalog import load_catalog
from aistats_gateway.formats.gemini.response import usage_from_metadata
from aistats_gateway.money import METERS, PriceCard, PriceTier, parse_price, split_usage
from aistats_gateway.settings import ConfigError, load_settings
from tests.fakes.anthropic_server import Behaviour, FakeAnthropic, FakeAnthropicServer
from tests.harness import Admin, GatewayServer, gateway_settings, wait_for


def usd(text: str) -> int:
    return parse_price(text)


# A Gemini-2.5-Pro-like card: dearer past 200k input tokens.
TIERED = PriceCard(
    input=usd("1.25"),
    output=usd("10"),
    cached_input=usd("0.125"),
    tiers=(
        PriceTier.of(
            {"input_tokens_over": 200_000}, input=usd("2.5"), output=usd("15"), cached_input=usd("0.25")
        ),
    ),
)


# --- token meters ------------------------------------------------------------------------------


def test_every_token_meter_bills_its_own_tokens_at_its_own_price() -> None:
    # Distinct prices (nano-USD per token = price x 1000) so a token billed at the wrong meter shows.
    card = PriceCard(
        input=usd("1"),
        cached_input=usd("0.1"),
        cache_write=usd("1.25"),
        cache_write_1h=usd("2"),
        input_audio=usd("7"),
        input_image=usd("3"),
        output=usd("10"),
        reasoning=usd("20"),
        output_audio=usd("40"),
        output_image=usd("30"),
    )
    usage = Usage(
        input_tokens=1000,  # 100 cached + 200 written (50 of them 1h) + 300 audio + 150 image + 250 plain
        cached_input_tokens=100,
        cache_write_tokens=200,
        cache_write_1h_tokens=50,
        input_audio_tokens=300,
        input_image_tokens=150,
        output_tokens=500,  # 100 reasoning + 60 audio + 40 image + 300 plain
        reasoning_tokens=100,
        output_audio_tokens=60,
        output_image_tokens=40,
    )
    expected = {
        "cached_input": 100 * 100,
        "cache_write": 150 * 1250,
        "cache_write_1h": 50 * 2000,
        "input_audio": 300 * 7000,
        "input_image": 150 * 3000,
        "input": 250 * 1000,
        "reasoning": 100 * 20_000,
        "output_audio": 60 * 40_000,
        "output_image": 40 * 30_000,
        "output": 300 * 10_000,
    }
    assert card.cost_breakdown(usage) == expected
    assert card.cost(usage) == sum(expected.values()) == 11_697_500


def test_cache_read_and_write_on_one_usage_are_each_billed_once() -> None:
    card = PriceCard(input=usd("3"), output=usd("15"), cached_input=usd("0.3"), cache_write=usd("3.75"))
    # Anthropic-style: 1000 uncached + 4000 cache reads + 2000 cache writes = 7000 input tokens.
    usage = Usage(input_tokens=7000, cached_input_tokens=4000, cache_write_tokens=2000, output_tokens=100)
    assert card.cost(usage) == 1000 * 3000 + 4000 * 300 + 2000 * 3750 + 100 * 15_000 == 13_200_000


def test_unset_meters_fall_back_to_the_plain_input_and_output_prices() -> None:
    plain = PriceCard(input=usd("2"), output=usd("8"))
    usage = Usage(
        input_tokens=1000,
        cached_input_tokens=100,
        cache_write_tokens=100,
        cache_write_1h_tokens=40,
        input_audio_tokens=100,
        input_image_tokens=100,
        output_tokens=1000,
        reasoning_tokens=100,
        output_audio_tokens=100,
        output_image_tokens=100,
    )
    assert plain.cost(usage) == 1000 * 2000 + 1000 * 8000
    # 1-hour writes fall back to the 5-minute write price, not to input.
    card = PriceCard(input=usd("1"), output=usd("1"), cache_write=usd("1.25"))
    assert card.rates()["cache_write_1h"] == usd("1.25")


def test_reasoning_tokens_can_be_priced_apart_from_the_rest_of_the_output() -> None:
    card = PriceCard(input=usd("1"), output=usd("4"), reasoning=usd("10"))
    usage = Usage(input_tokens=10, output_tokens=1000, reasoning_tokens=800)
    assert card.cost(usage) == 10 * 1000 + 800 * 10_000 + 200 * 4000


def test_over_reported_parts_are_clamped_so_no_token_is_billed_twice() -> None:
    # A provider claiming more cached + written + audio tokens than input: never more than input.
    usage = Usage(input_tokens=100, cached_input_tokens=80, cache_write_tokens=50, input_audio_tokens=30)
    counts = split_usage(usage)
    assert counts["cached_input"] == 80 and counts["cache_write"] == 20
    assert counts["input_audio"] == 0 and counts["input"] == 0
    assert (
        sum(
            counts[m]
            for m in ("cached_input", "cache_write", "cache_write_1h", "input_audio", "input_image", "input")
        )
        == 100
    )
    assert split_usage(Usage(output_tokens=10, reasoning_tokens=25))["reasoning"] == 10


# --- unit meters -------------------------------------------------------------------------------


def test_per_request_fee_is_charged_once_per_generation() -> None:
    card = PriceCard(input=usd("1"), output=usd("2"), request=usd("0.005"))
    assert card.cost(Usage()) == 5_000_000
    assert card.cost(Usage(input_tokens=1000, output_tokens=500)) == 5_000_000 + 1_000_000 + 1_000_000
    assert card.cost(Usage(), requests=0) == 0


def test_per_image_and_per_video_second_meters() -> None:
    card = PriceCard(input=usd("5"), output=usd("40"), image=usd("0.04"), video_second=usd("0.10"))
    assert card.cost(Usage(input_tokens=200), images=3) == 200 * 5000 + 3 * 40_000_000 == 121_000_000
    assert card.cost(Usage(), video_seconds=8) == 800_000_000
    breakdown = card.cost_breakdown(Usage(input_tokens=200), images=3, video_seconds=8)
    assert breakdown == {"input": 1_000_000, "image": 120_000_000, "video_second": 800_000_000}


# --- tiers -------------------------------------------------------------------------------------


def test_tier_applies_strictly_above_its_threshold() -> None:
    at_threshold = Usage(input_tokens=200_000, output_tokens=1000)
    above = Usage(input_tokens=200_001, output_tokens=1000)
    assert TIERED.cost(at_threshold) == 200_000 * 1250 + 1000 * 10_000 == 260_000_000
    assert TIERED.cost(above) == 200_001 * 2500 + 1000 * 15_000 == 515_002_500


def test_tier_threshold_counts_cached_input_and_prices_it_at_the_tier_cached_price() -> None:
    usage = Usage(input_tokens=250_000, cached_input_tokens=100_000, output_tokens=0)
    assert TIERED.cost(usage) == 150_000 * 2500 + 100_000 * 250


def test_a_tier_overrides_only_the_meters_it_names() -> None:
    card = PriceCard(
        input=usd("1"),
        output=usd("2"),
        cached_input=usd("0.5"),
        request=usd("0.01"),
        tiers=(PriceTier.of({"input_tokens_over": 100}, output=usd("3")),),
    )
    rates = card.rates_for(Usage(input_tokens=101))
    assert rates["output"] == usd("3") and rates["reasoning"] == usd("3")  # reasoning follows output
    assert (
        rates["input"] == usd("1") and rates["cached_input"] == usd("0.5") and rates["request"] == usd("0.01")
    )


def test_an_unset_meter_in_a_tier_follows_the_tier_fallback() -> None:
    # No cached_input anywhere: in the tier, cache reads cost the tier's input price.
    card = PriceCard(
        input=usd("1"), output=usd("2"), tiers=(PriceTier.of({"input_tokens_over": 10}, input=usd("4")),)
    )
    assert card.rates_for(Usage(input_tokens=11))["cached_input"] == usd("4")


def test_the_last_matching_tier_wins() -> None:
    card = PriceCard(
        input=usd("1"),
        output=usd("1"),
        tiers=(
            PriceTier.of({"input_tokens_over": 100}, input=usd("2")),
            PriceTier.of({"input_tokens_over": 1000}, input=usd("3")),
            PriceTier.of({"total_tokens_over": 5000}, input=usd("5")),
        ),
    )
    assert card.rates_for(Usage(input_tokens=100))["input"] == usd("1")
    assert card.rates_for(Usage(input_tokens=101))["input"] == usd("2")
    assert card.rates_for(Usage(input_tokens=1001))["input"] == usd("3")
    assert card.rates_for(Usage(input_tokens=1001, output_tokens=4000))["input"] == usd("5")


def test_a_tier_with_two_conditions_needs_both() -> None:
    tier = PriceTier.of({"input_tokens_over": 100, "total_tokens_over": 500}, input=usd("9"))
    assert not tier.holds(101, 500) and not tier.holds(100, 501) and tier.holds(101, 501)


# --- rounding ----------------------------------------------------------------------------------


def test_fractions_of_a_nano_usd_from_several_meters_are_summed_then_rounded_up_once() -> None:
    # Each meter costs a fraction of a nano-USD: 0.4 + 0.4 + 0.4 = 1.2 -> 2 (not 3, not 1).
    card = PriceCard(input=usd("0.0004"), cached_input=usd("0.0004"), output=usd("0.0004"))
    usage = Usage(input_tokens=2, cached_input_tokens=1, output_tokens=1)
    assert card.cost(usage) == 2
    breakdown = card.cost_breakdown(usage)
    assert sum(breakdown.values()) == 2 and set(breakdown.values()) <= {0, 1}


def test_breakdown_always_sums_to_the_cost() -> None:
    rng = random.Random(7)
    card = PriceCard(
        input=usd("0.0375"),
        output=usd("0.15"),
        cached_input=usd("0.001"),
        cache_write=usd("0.046875"),
        reasoning=usd("0.333333333"),
        request=usd("0.000000001"),
    )
    for _ in range(300):
        usage = _random_usage(rng, 50_000, 20_000)
        assert sum(card.cost_breakdown(usage).values()) == card.cost(usage)


# --- reservations ------------------------------------------------------------------------------


def _random_usage(rng: random.Random, max_input: int, max_output: int) -> Usage:
    input_tokens = rng.randint(0, max_input)
    output_tokens = rng.randint(0, max_output)
    write = rng.randint(0, input_tokens)
    return Usage(
        input_tokens=input_tokens,
        cached_input_tokens=rng.randint(0, input_tokens),
        cache_write_tokens=write,
        cache_write_1h_tokens=rng.randint(0, write),
        input_audio_tokens=rng.randint(0, input_tokens),
        input_image_tokens=rng.randint(0, input_tokens),
        output_tokens=output_tokens,
        reasoning_tokens=rng.randint(0, output_tokens),
        output_audio_tokens=rng.randint(0, output_tokens),
        output_image_tokens=rng.randint(0, output_tokens),
    )


def _random_card(rng: random.Random) -> PriceCard:
    def price() -> int:
        return rng.choice([0, 1, 7, 37_500_000, 150_000_000, 3_000_000_000, 15_000_000_000])

    token_meters = {
        m: price() for m in ("cached_input", "cache_write", "reasoning", "input_audio", "output_image")
    }
    tiers = tuple(
        PriceTier.of(
            {rng.choice(["input_tokens_over", "total_tokens_over"]): rng.randint(0, 60_000)},
            **{m: price() for m in rng.sample(METERS, 3)},
        )
        for _ in range(rng.randint(0, 3))
    )
    return PriceCard(
        input=price(), output=price(), request=rng.choice([0, 5_000_000]), tiers=tiers, **token_meters
    )


def test_worst_case_covers_every_usage_within_the_limits_under_every_tier() -> None:
    rng = random.Random(20261126)
    for _ in range(200):
        card = _random_card(rng)
        max_input, max_output = rng.randint(0, 60_000), rng.randint(0, 30_000)
        bound = card.worst_case(max_input, max_output)
        for _ in range(20):
            usage = _random_usage(rng, max_input, max_output)
            assert card.cost(usage) <= bound, (card, usage)


def test_worst_case_reserves_the_tier_only_when_the_limits_can_reach_it() -> None:
    assert TIERED.worst_case(100_000, 1000) == 100_000 * 1250 + 1000 * 10_000
    assert TIERED.worst_case(300_000, 1000) == 300_000 * 2500 + 1000 * 15_000


def test_worst_case_includes_unit_fees_and_the_dearest_input_meter() -> None:
    card = PriceCard(
        input=usd("1"), output=usd("2"), cache_write_1h=usd("2"), request=usd("0.01"), image=usd("0.04")
    )
    assert card.worst_case(1000, 100) == 1000 * 2000 + 100 * 2000 + 10_000_000
    assert card.worst_case(0, 0, images=2) == 10_000_000 + 80_000_000


def test_is_free_looks_at_every_meter_and_tier() -> None:
    assert PriceCard().is_free
    assert not PriceCard(request=1).is_free
    assert not PriceCard(reasoning=1).is_free
    assert not PriceCard(tiers=(PriceTier.of({"input_tokens_over": 1}, output=1),)).is_free


# --- config ------------------------------------------------------------------------------------


def _config(tmp_path: Path, price: str) -> str:
    path = tmp_path / "gateway.yaml"
    text = f"""
        models:
          me/m:
            providers:
              - provider: openai
                model: m
                price: {price}
        """
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def _config_error(tmp_path: Path, price: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(_config(tmp_path, price), env={})
    return str(info.value)


def test_config_card_with_tiers_and_unit_meters_loads(tmp_path: Path) -> None:
    price = """
                  input: "1.25"
                  output: "10"
                  cached_input: "0.125"
                  cache_write: "1.5625"
                  request: "0.001"
                  image: "0.04"
                  tiers:
                    - when: {input_tokens_over: 200000}
                      input: "2.50"
                      output: "15"
                      cached_input: "0.25"
    """
    entry = load_catalog(load_settings(_config(tmp_path, price), env={})).get("me/m")
    assert entry is not None
    card = entry.routes[0].price
    assert card.cost(Usage(input_tokens=200_001)) == 200_001 * 2500 + 1_000_000
    pricing = entry.to_openai_model()["pricing"]
    assert (
        pricing["input"] == "1.25"
        and pricing["cached_input"] == "0.125"
        and pricing["cache_write"] == "1.5625"
    )
    assert pricing["request"] == "0.001" and pricing["image"] == "0.04"
    assert pricing["tiers"] == [
        {"when": {"input_tokens_over": 200000}, "input": "2.5", "cached_input": "0.25", "output": "15"}
    ]


@pytest.mark.parametrize(
    ("price", "message"),
    [
        (
            '{input: "1", output: "1", cache_read: "0.1"}',
            "models.me/m.providers[0].price.cache_read: unknown key: not a price meter",
        ),
        (
            '{input: "1", output: "1", tiers: [{when: {input_tokens_over: 10}, reasonning: "2"}]}',
            "models.me/m.providers[0].price.tiers[0].reasonning: unknown key: not a price meter",
        ),
        (
            '{input: "1", output: "1", tiers: [{when: {prompt_over: 10}, input: "2"}]}',
            "models.me/m.providers[0].price.tiers[0].when.prompt_over: unknown tier condition",
        ),
        (
            '{input: "1", output: "1", tiers: [{input: "2"}]}',
            "models.me/m.providers[0].price.tiers[0].when: required",
        ),
        (
            '{input: "1", output: "1", tiers: [{when: {input_tokens_over: 10}}]}',
            "models.me/m.providers[0].price.tiers[0]: a tier must name at least one meter",
        ),
        (
            '{input: "1", output: "1", tiers: [{when: {input_tokens_over: -1}, input: "2"}]}',
            "models.me/m.providers[0].price.tiers[0].when.input_tokens_over:",
        ),
        (
            '{input: "1", output: "1", tiers: [{when: {input_tokens_over: 10}, input: "-2"}]}',
            "models.me/m.providers[0].price.tiers[0].input: price must not be negative",
        ),
        (
            '{input: "1", output: "1", tiers: []}',
            "models.me/m.providers[0].price.tiers: must be a non-empty list",
        ),
        (
            '{input: "1", output: "1", request: "abc"}',
            "models.me/m.providers[0].price.request: not a decimal",
        ),
        (
            '{input: "1", output: "1", tiers: [{when: {input_tokens_over: 10}, tiers: []}]}',
            "models.me/m.providers[0].price.tiers[0].tiers: unknown key",
        ),
    ],
)
def test_price_card_config_errors_name_the_key(tmp_path: Path, price: str, message: str) -> None:
    assert _config_error(tmp_path, price).startswith(message)


def test_free_model_tiers_and_unit_meters_must_cost_zero(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        textwrap.dedent(
            """
            models:
              me/m:free:
                providers:
                  - provider: openai
                    model: m
                    price: {input: "0", output: "0", tiers: [{when: {input_tokens_over: 1}, request: "0.01"}]}
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"price\.tiers\[0\]\.request: a ':free' model must cost 0"):
        load_settings(path, env={})


# --- usage parsing -----------------------------------------------------------------------------


def test_chat_passthrough_usage_reads_cache_writes_and_audio() -> None:
    # The passthrough reads Usage.from_openai_chat directly: cache writes were once dropped there.
    usage = Usage.from_openai_chat(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 100, "audio_tokens": 50},
            "completion_tokens_details": {"reasoning_tokens": 30, "audio_tokens": 70},
        }
    )
    assert usage == Usage(
        input_tokens=1000,
        cached_input_tokens=200,
        cache_write_tokens=100,
        input_audio_tokens=50,
        output_tokens=300,
        reasoning_tokens=30,
        output_audio_tokens=70,
    )
    deepseek = Usage.from_openai_chat({"prompt_tokens": 10, "prompt_cache_hit_tokens": 4})
    assert deepseek is not None and deepseek.cached_input_tokens == 4


def test_responses_passthrough_usage_reads_cache_writes() -> None:
    usage = Usage.from_openai_responses(
        {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 20},
            "output_tokens": 5,
        }
    )
    assert usage is not None and usage.cache_write_tokens == 20 and usage.cached_input_tokens == 10


def test_anthropic_usage_keeps_one_hour_cache_writes_apart() -> None:
    usage = Usage.from_anthropic(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 5,
        }
    )
    assert usage == Usage(
        input_tokens=410,
        cached_input_tokens=100,
        cache_write_tokens=300,
        cache_write_1h_tokens=200,
        output_tokens=5,
    )


def test_gemini_usage_reads_audio_and_image_tokens_by_modality() -> None:
    usage = usage_from_metadata(
        {
            "promptTokenCount": 1000,
            "cachedContentTokenCount": 300,
            "candidatesTokenCount": 1300,
            "thoughtsTokenCount": 20,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": 400},
                {"modality": "AUDIO", "tokenCount": 500},
                {"modality": "IMAGE", "tokenCount": 100},
            ],
            "cacheTokensDetails": [
                {"modality": "AUDIO", "tokenCount": 200},
                {"modality": "TEXT", "tokenCount": 100},
            ],
            "candidatesTokensDetails": [
                {"modality": "IMAGE", "tokenCount": 1290},
                {"modality": "TEXT", "tokenCount": 10},
            ],
        }
    )
    # Cached audio is billed once, as cached: only the 300 uncached audio tokens are audio.
    assert usage == Usage(
        input_tokens=1000,
        cached_input_tokens=300,
        input_audio_tokens=300,
        input_image_tokens=100,
        output_tokens=1320,
        reasoning_tokens=20,
        output_image_tokens=1290,
    )


# --- end to end --------------------------------------------------------------------------------

MODEL = "anthropic/tiered-test"
E2E_PRICE: dict[str, Any] = {
    "input": "3",
    "output": "15",
    "cached_input": "0.3",
    "cache_write": "3.75",
    "tiers": [
        {
            "when": {"input_tokens_over": 5000},
            "input": "6",
            "output": "22.5",
            "cached_input": "0.6",
            "cache_write": "7.5",
        }
    ],
}


@pytest.fixture
def tiered_gateway(tmp_path: Path) -> Iterator[tuple[GatewayServer, FakeAnthropic, str]]:
    with FakeAnthropicServer(FakeAnthropic(api_key="sk-ant-fake")) as server:
        config = {
            "providers": {
                "claude": {"type": "anthropic", "base_url": server.base_url, "api_key": "sk-ant-fake"}
            },
            "models": {
                MODEL: {
                    "max_output_tokens": 2000,
                    "providers": [{"provider": "claude", "model": "claude-test-1", "price": E2E_PRICE}],
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
            yield gateway, server.fake, key


def _recorded_cost(gateway: GatewayServer, key: str, generation_id: str) -> int:
    def fetch() -> Any:
        response = httpx.get(
            f"{gateway.base_url}/v1/generations", params={"id": generation_id}, headers={"x-api-key": key}
        )
        return response.json() if response.status_code == 200 else None

    return int(wait_for(fetch)["data"]["cost_nanos"])


def test_cache_writes_and_the_long_context_tier_are_billed_end_to_end(
    tiered_gateway: tuple[GatewayServer, FakeAnthropic, str],
) -> None:
    gateway, fake, key = tiered_gateway
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": "hi"}]

    # Below the tier: 1000 uncached + 3001 cache reads + 500 cache writes = 4501 input tokens.
    fake.enqueue(
        Behaviour(
            text="ok", input_tokens=1000, cached_tokens=3001, cache_creation_tokens=500, output_tokens=200
        )
    )
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=500, messages=messages)
    base_cost = 1000 * 3000 + 3001 * 300 + 500 * 3750 + 200 * 15_000
    assert base_cost == 8_775_300
    message = raw.parse()
    assert message.usage.model_extra is not None and message.usage.model_extra["cost"] == base_cost / 1e9
    assert _recorded_cost(gateway, key, raw.headers["x-generation-id"]) == base_cost

    # Above it, streamed: 2000 + 3001 + 1000 = 6001 input tokens, every meter at the tier price.
    fake.enqueue(
        Behaviour(
            text="a longer answer",
            input_tokens=2000,
            cached_tokens=3001,
            cache_creation_tokens=1000,
            output_tokens=300,
        )
    )
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=500, messages=messages, stream=True
    ) as streamed:
        generation_id = streamed.headers["x-generation-id"]
        deltas = [event for event in streamed.parse() if event.type == "message_delta"]
    tier_cost = 2000 * 6000 + 3001 * 600 + 1000 * 7500 + 300 * 22_500
    assert tier_cost == 28_050_600
    usage_extra = deltas[-1].usage.model_extra
    assert usage_extra is not None and usage_extra["cost"] == tier_cost / 1e9
    assert _recorded_cost(gateway, key, generation_id) == tier_cost

    # The same usage through the chat surface (translated, not passed through) costs the same.
    fake.enqueue(
        Behaviour(
            text="a longer answer",
            input_tokens=2000,
            cached_tokens=3001,
            cache_creation_tokens=1000,
            output_tokens=300,
        )
    )
    chat = gateway.openai(key).chat.completions.with_raw_response.create(
        model=MODEL, max_tokens=500, messages=messages
    )
    completion = chat.parse()
    assert completion.usage is not None and completion.usage.model_extra is not None
    assert completion.usage.model_extra["cost"] == tier_cost / 1e9
    assert _recorded_cost(gateway, key, chat.headers["x-generation-id"]) == tier_cost
