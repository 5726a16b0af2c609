"""KeyLimits: API parsing, partial updates, storage round trip, model globs."""

from __future__ import annotations

import pytest

from aistats_gateway.key_limits import UNLIMITED, KeyLimits, LimitsError


def test_api_limits_round_trip_through_storage_in_nano_usd() -> None:
    limits = KeyLimits.from_api(
        {
            "spend_usd": {"daily": "5", "monthly": "100.5", "total": None},
            "requests_per_minute": 60,
            "tokens_per_minute": 100_000,
            "allowed_models": ["openai/*", "anthropic/claude-haiku-5-5"],
        }
    )
    assert limits.spend_daily_nano == 5_000_000_000
    assert limits.spend_monthly_nano == 100_500_000_000
    assert limits.spend_limits() == {"daily": 5_000_000_000, "monthly": 100_500_000_000}
    assert KeyLimits.from_json(limits.to_json()) == limits
    assert limits.to_api()["spend_usd"] == {"daily": "5", "monthly": "100.5", "total": None}


def test_absent_fields_keep_the_current_limits_and_null_removes_one() -> None:
    base = KeyLimits.from_api({"requests_per_minute": 10, "spend_usd": {"daily": "1"}})
    updated = KeyLimits.from_api({"tokens_per_minute": 500, "spend_usd": {"daily": None}}, base)
    assert updated.requests_per_minute == 10
    assert updated.tokens_per_minute == 500
    assert updated.spend_daily_nano is None


def test_unlimited_is_stored_as_null() -> None:
    assert UNLIMITED.to_json() is None
    assert KeyLimits.from_json(None) is UNLIMITED
    assert KeyLimits.from_api({"requests_per_minute": None}).unlimited


def test_allowed_models_are_globs_over_gateway_model_ids() -> None:
    limits = KeyLimits.from_api({"allowed_models": ["openai/*", "*:free"]})
    assert limits.allows_model("openai/gpt-4o-mini")
    assert limits.allows_model("google/gemma-3-27b:free")
    assert not limits.allows_model("anthropic/claude-opus-4-5")
    assert UNLIMITED.allows_model("anything/at-all")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requests_per_minute": 0}, "limits.requests_per_minute"),
        ({"tokens_per_minute": "10"}, "limits.tokens_per_minute"),
        ({"spend_usd": {"weekly": "1"}}, "limits.spend_usd.weekly"),
        ({"spend_usd": {"daily": "-1"}}, "limits.spend_usd.daily"),
        ({"spend_usd": {"daily": "0.0000000001"}}, "limits.spend_usd.daily"),
        ({"allowed_models": []}, "limits.allowed_models"),
        ({"allowed_models": ["bad model"]}, "limits.allowed_models[0]"),
        ({"burst": 3}, "limits.burst"),
    ],
)
def test_invalid_limits_name_the_field(body: dict, field: str) -> None:
    with pytest.raises(LimitsError) as info:
        KeyLimits.from_api(body)
    assert info.value.field == field
