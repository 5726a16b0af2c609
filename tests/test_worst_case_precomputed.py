"""PriceCard.worst_case reads prices precomputed at construction (it runs on every request);
it must equal the direct definition: every token at the dearest meter of every reachable tier."""

from __future__ import annotations

import random

from aistats_gateway.money import METERS, TOKENS_PER_PRICE_UNIT, PriceCard, PriceTier

from .test_price_cards import _random_card

_INPUT = ("input", "cached_input", "cache_write", "cache_write_1h", "input_audio", "input_image")
_OUTPUT = ("output", "reasoning", "output_audio", "output_image")


def reference_worst_case(card: PriceCard, max_input: int, max_output: int, units: dict[str, int]) -> int:
    total = max_input + max_output
    resolved = card._rates  # the base card's rates, then each tier's
    reachable = [resolved[0]] + [
        resolved[index + 1] for index, tier in enumerate(card.tiers) if tier.holds(max_input, total)
    ]
    input_price = max(rates[m] for rates in reachable for m in _INPUT)
    output_price = max(rates[m] for rates in reachable for m in _OUTPUT)
    unit_cost = sum(count * max(rates[m] for rates in reachable) for m, count in units.items())
    scaled = max_input * input_price + max_output * output_price + unit_cost * TOKENS_PER_PRICE_UNIT
    return -(-scaled // TOKENS_PER_PRICE_UNIT)


def test_precomputed_worst_case_equals_the_definition_on_random_tiered_cards() -> None:
    rng = random.Random(9)
    for _ in range(500):
        card = _random_card(rng)
        if rng.random() < 0.3:  # unit meters in tiers too
            card = PriceCard(
                input=card.input,
                output=card.output,
                image=rng.choice([0, 40_000_000]),
                tiers=(
                    *card.tiers,
                    PriceTier.of({"total_tokens_over": rng.randint(0, 9_000)}, image=90_000_000),
                ),
            )
        max_input, max_output = rng.randint(0, 60_000), rng.randint(0, 30_000)
        units = {
            "request": rng.choice([0, 1, 2]),
            "image": rng.randint(0, 3),
            "video_second": rng.randint(0, 8),
        }
        expected = reference_worst_case(card, max_input, max_output, units)
        got = card.worst_case(
            max_input,
            max_output,
            requests=units["request"],
            images=units["image"],
            video_seconds=units["video_second"],
        )
        assert got == expected, (card, max_input, max_output, units)
    assert len(METERS) == len(_INPUT) + len(_OUTPUT) + 3
