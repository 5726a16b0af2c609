"""Integer nano-USD: exact parsing, price cards, rounding of costs and reservations."""

from __future__ import annotations

import pytest

from aistats_gateway.canonical import Usage
from aistats_gateway.money import (
    PriceCard,
    PriceError,
    format_usd,
    nanos_to_usd,
    parse_price,
    parse_usd,
)

# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("12.50", 12_500_000_000),
        ("0.0375", 37_500_000),
        ("0.000000001", 1),
        ("1e-9", 1),
        (" 2 ", 2_000_000_000),
        ("0", 0),
        (3, 3_000_000_000),
        (0.1, 100_000_000),  # YAML floats go through str, so 0.1 stays 0.1
        (0.075, 75_000_000),
        ("0.1000000000", 100_000_000),  # trailing zeros add no precision
    ],
)
def test_parse_usd_is_exact(text: str | int | float, nanos: int) -> None:
    assert parse_usd(text) == nanos


@pytest.mark.parametrize("text", ["0.0000000001", "1.0000000005", 0.1 + 0.2])
def test_more_than_nano_precision_is_an_error_not_a_rounding(text: str | float) -> None:
    with pytest.raises(PriceError, match="more precision than 1e-9 USD"):
        parse_usd(text)


@pytest.mark.parametrize("text", ["abc", "", "1.2.3", "$5", None])
def test_non_numbers_are_rejected(text: object) -> None:
    with pytest.raises(PriceError, match="not a decimal USD amount"):
        parse_usd(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-inf"])
def test_non_finite_amounts_are_rejected(text: str) -> None:
    with pytest.raises(PriceError, match="not a finite USD amount"):
        parse_usd(text)


def test_booleans_are_not_amounts() -> None:
    # YAML turns `yes`/`true` into booleans; True must not become $1.
    with pytest.raises(PriceError):
        parse_usd(True)


def test_prices_must_not_be_negative() -> None:
    with pytest.raises(PriceError, match="must not be negative"):
        parse_price("-0.15")
    assert parse_price("0.15") == 150_000_000


def test_very_long_amounts_are_not_silently_rounded() -> None:
    with pytest.raises(PriceError):
        parse_usd("123456789012345678.0000000001")
    assert parse_usd("123456789012345678.000000001") == 123456789012345678_000000001


@pytest.mark.parametrize("text", ["1_000", "1e30", "", "abc", "1.2.3", "NaN"])
def test_underscores_and_absurd_amounts_are_rejected(text: str) -> None:
    with pytest.raises(PriceError):
        parse_usd(text)


# --- formatting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0"),
        (1, "0.000000001"),
        (1350, "0.00000135"),
        (1_000_000_000, "1"),
        (150_000_000, "0.15"),
        (-1, "-0.000000001"),
    ],
)
def test_format_usd_is_exact_and_trims_zeros(nanos: int, text: str) -> None:
    assert format_usd(nanos) == text


@pytest.mark.parametrize("nanos", [0, 1, 999_999_999, 1_000_000_001, 123_456_789_012, -42])
def test_format_then_parse_round_trips(nanos: int) -> None:
    assert parse_usd(format_usd(nanos)) == nanos


def test_nanos_to_usd_gives_a_json_number() -> None:
    assert nanos_to_usd(1_500_000_000) == 1.5
    assert nanos_to_usd(1350) == pytest.approx(0.00000135)


# --- price cards ---------------------------------------------------------------------------

MINI = PriceCard(input=parse_price("0.15"), output=parse_price("0.60"), cached_input=parse_price("0.075"))


def test_cost_of_plain_input_and_output_is_exact() -> None:
    # 1234 * $0.15/1M + 567 * $0.60/1M = $0.0001851 + $0.0003402
    assert MINI.cost(Usage(input_tokens=1234, output_tokens=567)) == 185_100 + 340_200


def test_cached_input_tokens_are_billed_at_the_cached_price() -> None:
    usage = Usage(input_tokens=1000, cached_input_tokens=400, output_tokens=0)
    # 600 fresh at 0.15 + 400 cached at 0.075 (cached tokens are part of input_tokens)
    assert MINI.cost(usage) == 600 * 150 + 400 * 75


def test_cached_price_defaults_to_the_input_price() -> None:
    card = PriceCard(input=parse_price("2"), output=parse_price("8"))
    usage = Usage(input_tokens=1000, cached_input_tokens=1000)
    assert card.cost(usage) == card.cost(Usage(input_tokens=1000))


def test_cached_tokens_beyond_input_tokens_are_not_billed_twice() -> None:
    usage = Usage(input_tokens=100, cached_input_tokens=500)
    assert MINI.cost(usage) == 100 * 75


def test_reasoning_tokens_are_part_of_output_and_billed_once() -> None:
    with_reasoning = Usage(input_tokens=10, output_tokens=1000, reasoning_tokens=800)
    assert MINI.cost(with_reasoning) == MINI.cost(Usage(input_tokens=10, output_tokens=1000))
    assert MINI.cost(with_reasoning) == 10 * 150 + 1000 * 600


def test_cost_rounds_up_once_at_the_end() -> None:
    card = PriceCard(input=1, output=1)  # 1 nano-USD per 1M tokens
    assert card.cost(Usage()) == 0
    assert card.cost(Usage(input_tokens=1)) == 1  # any fraction of a nano-USD is charged
    assert card.cost(Usage(input_tokens=1_000_000)) == 1
    assert card.cost(Usage(input_tokens=1_000_001)) == 2
    # Rounded once over the sum, not per part: 0.5 + 0.5 nano is 1, not 2.
    assert card.cost(Usage(input_tokens=500_000, output_tokens=500_000)) == 1


def test_worst_case_rounds_up() -> None:
    card = PriceCard(input=1, output=1)
    assert card.worst_case(1, 0) == 1
    assert card.worst_case(0, 0) == 0
    assert card.worst_case(1_000_000, 1) == 2


def test_worst_case_uses_the_higher_of_input_and_cached_price() -> None:
    # A cache price above the input price (e.g. a write surcharge) must not under-reserve.
    card = PriceCard(input=parse_price("1"), output=parse_price("2"), cached_input=parse_price("3"))
    assert card.worst_case(1000, 0) == 1000 * 3000


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=8000, output_tokens=4096),
        Usage(input_tokens=8000, cached_input_tokens=8000, output_tokens=4096),
        Usage(input_tokens=1, output_tokens=1),
        Usage(input_tokens=7999, cached_input_tokens=3, output_tokens=4095, reasoning_tokens=4000),
    ],
)
def test_worst_case_covers_any_usage_within_the_limits(usage: Usage) -> None:
    assert MINI.worst_case(8000, 4096) >= MINI.cost(usage)


def test_free_card() -> None:
    assert PriceCard().is_free
    assert PriceCard(0, 0, 0).is_free
    assert not PriceCard(0, 1).is_free
    assert not PriceCard(0, 0, 1).is_free
    assert PriceCard().cost(Usage(input_tokens=10**9, output_tokens=10**9)) == 0
