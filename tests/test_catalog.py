"""Catalog: the shipped data file, merging the config over it, and the /v1/models rendering."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from aistats_gateway.canonical import Usage
from aistats_gateway.catalog import Catalog, load_builtin_models, load_catalog
from aistats_gateway.money import PriceCard, parse_price
from aistats_gateway.settings import ConfigError, Settings, load_settings, validate_models


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def settings_with(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_settings(path, env={})


# --- the shipped catalog -------------------------------------------------------------------


def test_builtin_catalog_loads_and_every_route_uses_a_builtin_provider() -> None:
    settings = load_settings(env={})
    catalog = load_catalog(settings)
    assert len(catalog) >= 20
    for model in catalog.all():
        assert model.routes, model.id
        for route in model.routes:
            assert route.provider in {"openai", "anthropic", "google-ai-studio", "xai"}, model.id
            assert route.model.strip() == route.model and route.model, model.id
            assert route.max_output_tokens > 0 and route.context_length > 0, model.id


def test_every_builtin_price_is_a_parsable_decimal_string() -> None:
    models = load_builtin_models({"openai", "anthropic", "google-ai-studio", "xai"})
    for model_id, spec in models.items():
        for route in spec["providers"]:
            price = route["price"]
            cards = [price, *price.get("tiers", [])]
            for card in cards:
                for part, text in card.items():
                    if part in {"tiers", "when"}:
                        continue
                    # Quoted strings, so YAML never turns a price into a float.
                    assert isinstance(text, str), f"{model_id} {part}"
                    parse_price(text)


def test_builtin_catalog_has_the_flagship_and_small_models_of_each_provider() -> None:
    ids = {m.id for m in load_catalog(load_settings(env={})).all()}
    expected = {
        "openai/gpt-6.2-astra",
        "openai/gpt-6.2-sol",
        "openai/gpt-6.1-terra",
        "openai/gpt-6-luna",
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
        "anthropic/claude-fable-5-2",
        "anthropic/claude-opus-5-5",
        "anthropic/claude-sonnet-5-5",
        "anthropic/claude-haiku-5-5",
        "google/gemini-4-argon",
        "google/gemini-3.8-flash",
        "google/gemini-3.5-flash-lite",
        "google/gemma-3-27b:free",
        "x-ai/grok-4.7",
        "x-ai/grok-4.3",
    }
    assert expected <= ids


def test_builtin_prices_match_the_published_list_prices() -> None:
    catalog = load_catalog(load_settings(env={}))

    def card(model_id: str) -> PriceCard:
        entry = catalog.get(model_id)
        assert entry is not None
        return entry.routes[0].price

    # Spot checks in nano-USD per 1M tokens (input, output, cached input).
    assert card("openai/gpt-4o-mini") == PriceCard(150_000_000, 600_000_000, 75_000_000)
    assert card("openai/gpt-5") == PriceCard(1_250_000_000, 10_000_000_000, 125_000_000)
    assert card("anthropic/claude-sonnet-4-5") == PriceCard(
        3_000_000_000, 15_000_000_000, 300_000_000, cache_write=3_750_000_000, cache_write_1h=6_000_000_000
    )
    assert card("google/gemini-2.5-flash") == PriceCard(300_000_000, 2_500_000_000, 30_000_000)
    assert card("x-ai/grok-3-mini") == PriceCard(300_000_000, 500_000_000, 75_000_000)


def test_builtin_free_model_is_free_and_served_by_google_ai_studio() -> None:
    entry = load_catalog(load_settings(env={})).get("google/gemma-3-27b:free")
    assert entry is not None and entry.free
    assert [(r.provider, r.model) for r in entry.routes] == [("google-ai-studio", "gemma-3-27b-it")]
    assert entry.routes[0].price.is_free
    assert entry.owned_by == "google"


def test_builtin_models_without_a_priced_tier_keep_within_their_base_tier() -> None:
    catalog = load_catalog(load_settings(env={}))
    base_tier_limits = {
        "x-ai/grok-4.7": 200_000,
        "x-ai/grok-4.3": 200_000,
        "anthropic/claude-haiku-5-5": 100_000,
    }
    for model_id, limit in base_tier_limits.items():
        entry = catalog.get(model_id)
        assert entry is not None and entry.context_length <= limit, model_id
        assert not entry.routes[0].price.tiers, model_id


@pytest.mark.parametrize(
    ("model_id", "threshold", "base", "tier"),
    [
        # (input, output, cached_input) in nano-USD per token (USD per 1M tokens x 1000), below
        # and above the threshold.
        ("google/gemini-2.5-pro", 200_000, (1_250, 10_000, 125), (2_500, 15_000, 250)),
        ("openai/gpt-6.2-astra", 272_000, (8_000, 40_000, 400), (16_000, 60_000, 800)),
        ("openai/gpt-6.2-sol", 272_000, (2_000, 10_000, 100), (4_000, 15_000, 200)),
        ("openai/gpt-6.1-terra", 272_000, (1_000, 5_000, 50), (2_000, 7_500, 100)),
        ("openai/gpt-6-luna", 272_000, (100, 500, 10), (200, 750, 20)),
    ],
)
def test_builtin_long_context_models_bill_their_tier_past_the_threshold(
    model_id: str, threshold: int, base: tuple[int, int, int], tier: tuple[int, int, int]
) -> None:
    entry = load_catalog(load_settings(env={})).get(model_id)
    assert entry is not None and entry.context_length > threshold  # the cap is lifted
    card = entry.routes[0].price
    for tokens, (input_price, output_price, cached_price) in ((threshold, base), (threshold + 1, tier)):
        usage = Usage(input_tokens=tokens, cached_input_tokens=1000, output_tokens=2000)
        expected = (tokens - 1000) * input_price + 1000 * cached_price + 2000 * output_price
        assert card.cost(usage) == expected, (model_id, tokens)


def test_builtin_anthropic_models_bill_cache_writes_at_1_25x_and_1h_writes_at_2x() -> None:
    catalog = load_catalog(load_settings(env={}))
    anthropic = [entry for entry in catalog.all() if entry.id.startswith("anthropic/")]
    assert len(anthropic) >= 5
    for entry in anthropic:
        rates = entry.routes[0].price.rates()
        assert rates["cache_write"] * 4 == rates["input"] * 5, entry.id
        assert rates["cache_write_1h"] == rates["input"] * 2, entry.id


# --- lookups -------------------------------------------------------------------------------


def test_get_all_and_len() -> None:
    catalog = load_catalog(load_settings(env={}))
    ids = [m.id for m in catalog.all()]
    assert ids == sorted(ids)
    assert len(catalog) == len(ids) == len(set(ids))
    entry = catalog.get("openai/gpt-4o-mini")
    assert entry is not None and entry.id == "openai/gpt-4o-mini"
    assert catalog.get("openai/gpt-404") is None
    assert "openai/gpt-4o-mini" in catalog


def test_all_returns_a_copy_callers_cannot_corrupt() -> None:
    catalog = load_catalog(load_settings(env={}))
    catalog.all().clear()
    assert len(catalog.all()) == len(catalog)


# --- merging the config --------------------------------------------------------------------


def test_config_model_replaces_the_builtin_entry(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        """
        providers:
          local: {type: openai_compatible, base_url: "http://127.0.0.1:8000/v1"}
        models:
          openai/gpt-4o-mini:
            providers:
              - provider: local
                model: my-mini
                price: {input: "0.1", output: "0.2"}
        """,
    )
    builtin = load_catalog(load_settings(env={})).get("openai/gpt-4o-mini")
    entry = load_catalog(settings).get("openai/gpt-4o-mini")
    assert builtin is not None and entry is not None
    assert [(r.provider, r.model) for r in entry.routes] == [("local", "my-mini")]
    assert entry.routes[0].price == PriceCard(100_000_000, 200_000_000, None)
    # Descriptive metadata carries over; limits are the config's (here: the defaults).
    assert (entry.name, entry.created) == (builtin.name, builtin.created)
    assert (entry.context_length, entry.max_output_tokens) == (128_000, 4_096)
    assert len(load_catalog(settings)) == len(load_catalog(load_settings(env={})))


def test_config_model_is_added_next_to_the_builtin_ones(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        """
        models:
          acme/writer:
            name: Acme Writer
            created: 2026-01-02
            providers:
              - {provider: openai, model: gpt-4o-mini, price: {input: "1", output: "2"}}
        """,
    )
    catalog = load_catalog(settings)
    entry = catalog.get("acme/writer")
    assert entry is not None
    assert (entry.name, entry.owned_by, entry.created) == ("Acme Writer", "acme", 1767312000)
    assert catalog.get("openai/gpt-4o") is not None


def test_model_limits_come_from_routes_when_the_model_has_none(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        """
        models:
          me/m:
            providers:
              - {provider: openai, model: a, price: {input: "1", output: "1"}, context_length: 32000}
              - {provider: xai, model: b, price: {input: "1", output: "1"}, context_length: 64000,
                 max_output_tokens: 8000}
        """,
    )
    entry = load_catalog(settings).get("me/m")
    assert entry is not None
    assert (entry.context_length, entry.max_output_tokens) == (64_000, 8_000)
    # A route without its own limit takes the model's.
    assert (entry.routes[0].context_length, entry.routes[0].max_output_tokens) == (32_000, 8_000)


def test_route_limits_come_from_the_model_when_the_route_has_none(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        """
        models:
          me/m:
            context_length: 50000
            max_output_tokens: 2000
            providers:
              - {provider: openai, model: a, price: {input: "1", output: "1"}}
        """,
    )
    entry = load_catalog(settings).get("me/m")
    assert entry is not None
    assert (entry.routes[0].context_length, entry.routes[0].max_output_tokens) == (50_000, 2_000)


def test_load_catalog_validates_models_given_directly_in_settings() -> None:
    settings = replace(
        load_settings(env={}),
        models={
            "me/m": {
                "providers": [{"provider": "nowhere", "model": "m", "price": {"input": "1", "output": "1"}}]
            }
        },
    )
    with pytest.raises(ConfigError) as info:
        load_catalog(settings)
    assert info.value.key == "models.me/m.providers[0].provider"


def test_catalog_data_errors_name_the_file() -> None:
    bad = {
        "me/m:free": {
            "providers": [{"provider": "openai", "model": "m", "price": {"input": "1", "output": "0"}}]
        }
    }
    with pytest.raises(ConfigError) as info:
        validate_models(bad, {"openai"}, "catalog/data/models.yaml: models")
    assert str(info.value).startswith("catalog/data/models.yaml: models.me/m:free.providers[0].price.input:")


# --- GET /v1/models rendering ---------------------------------------------------------------


def test_to_openai_model_renders_prices_as_decimal_strings(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        """
        models:
          me/m:
            name: My Model
            created: 1700000000
            context_length: 100000
            max_output_tokens: 5000
            providers:
              - {provider: openai, model: a, price: {input: "0.15", output: "0.6", cached_input: "0.075"}}
              - {provider: openai, model: b, price: {input: "9", output: "9"}}
              - {provider: xai, model: c, price: {input: "9", output: "9"}}
        """,
    )
    entry = load_catalog(settings).get("me/m")
    assert entry is not None
    assert entry.to_openai_model() == {
        "id": "me/m",
        "object": "model",
        "created": 1700000000,
        "owned_by": "me",
        "name": "My Model",
        "kind": "chat",
        "context_length": 100000,
        "max_output_tokens": 5000,
        "pricing": {
            "input": "0.15",
            "cached_input": "0.075",
            "cache_write": "0.15",
            "cache_write_1h": "0.15",
            "output": "0.6",
            "reasoning": "0.6",
            "input_audio": "0.15",
            "output_audio": "0.6",
            "input_image": "0.15",
            "output_image": "0.6",
            "request": "0",
            "image": "0",
            "video_second": "0",
            "tiers": [],
        },
        "providers": ["openai", "xai"],
    }


def test_to_openai_model_shows_the_input_price_for_cached_input_when_none_is_set() -> None:
    entry = load_catalog(load_settings(env={})).get("google/gemma-3-27b:free")
    assert entry is not None
    pricing = entry.to_openai_model()["pricing"]
    assert pricing["input"] == pricing["output"] == pricing["cached_input"] == "0"


def test_free_flag_follows_the_model_id() -> None:
    catalog = load_catalog(load_settings(env={}))
    assert [m.id for m in catalog.all() if m.free] == ["google/gemma-3-27b:free"]
    assert isinstance(catalog, Catalog)


def test_route_supported_parameters_become_a_frozenset_and_default_to_unknown(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        """
        models:
          me/m:
            providers:
              - {provider: openai, model: a, price: {input: "1", output: "1"},
                 supported_parameters: [tools, response_format]}
              - {provider: xai, model: b, price: {input: "1", output: "1"}}
        """,
    )
    entry = load_catalog(settings).get("me/m")
    assert entry is not None
    assert entry.routes[0].supported_parameters == frozenset({"tools", "response_format"})
    assert entry.routes[1].supported_parameters is None
