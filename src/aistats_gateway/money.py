"""Integer nano-USD arithmetic and price-card evaluation.

Money never touches a float inside the gateway: amounts are ``int`` nano-USD (1e-9 USD).
Prices come from config and the catalog as decimal strings in USD per 1M tokens (or per unit),
and are held as integer nano-USD per 1M tokens (or per unit), so ``"0.0375"`` stays exact. A
:class:`PriceCard` sums every meter of a generation exactly and rounds up once, at the end
(docs/pricing.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from .canonical import Usage

NANOS_PER_USD = 1_000_000_000
MAX_USD = 10**18
TOKENS_PER_PRICE_UNIT = 1_000_000


class PriceError(ValueError):
    """A price string that is not a non-negative decimal with at most nano-USD precision."""


def parse_usd(text: str | int | float) -> int:
    """Parse a decimal USD amount (``"12.50"``) into integer nano-USD, exactly.

    Floats are accepted only because YAML may produce them; they go through ``str`` first so
    ``0.1`` stays ``0.1``. More than nine decimal places is an error, not a silent rounding;
    so are underscores and amounts beyond ``MAX_USD``.
    """
    if isinstance(text, bool):
        raise PriceError(f"not a USD amount: {text!r}")
    literal = str(text).strip()
    try:
        value = Decimal(literal) if "_" not in literal else None
    except InvalidOperation:
        value = None
    if value is None:
        raise PriceError(f"not a decimal USD amount: {text!r}")
    if not value.is_finite():
        raise PriceError(f"not a finite USD amount: {text!r}")
    if abs(value) > MAX_USD:
        raise PriceError(f"amount beyond {MAX_USD} USD: {text!r}")
    with localcontext(prec=64):  # exact for every amount up to MAX_USD with 9+ decimals
        nanos = value * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise PriceError(f"more precision than 1e-9 USD: {text!r}")
    return int(nanos)


def parse_price(text: str | int | float) -> int:
    """Parse a non-negative price in USD per 1M units into nano-USD per 1M units."""
    nanos = parse_usd(text)
    if nanos < 0:
        raise PriceError(f"price must not be negative: {text!r}")
    return nanos


def nanos_to_usd(nanos: int) -> float:
    """USD as a JSON number for API bodies (``usage.cost``); exact up to 2**53 nano-USD."""
    return nanos / NANOS_PER_USD


def format_usd(nanos: int) -> str:
    """USD as an exact decimal string, trailing zeros trimmed (``"0.00000135"``)."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_USD)
    frac_text = f"{frac:09d}".rstrip("0")
    return f"{sign}{whole}.{frac_text}" if frac_text else f"{sign}{whole}"


# --- price cards -----------------------------------------------------------------------------

# Token meters are priced per 1M tokens, unit meters per unit (request, generated image,
# second of video). Every amount is integer nano-USD.
TOKEN_METERS: tuple[str, ...] = (
    "input",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "output",
    "reasoning",
    "input_audio",
    "output_audio",
    "input_image",
    "output_image",
)
UNIT_METERS: tuple[str, ...] = ("request", "image", "video_second")
METERS: tuple[str, ...] = TOKEN_METERS + UNIT_METERS
# A token meter the card leaves unset costs what this other meter costs (followed transitively).
METER_FALLBACK: dict[str, str] = {
    "cached_input": "input",
    "cache_write": "input",
    "cache_write_1h": "cache_write",
    "reasoning": "output",
    "input_audio": "input",
    "input_image": "input",
    "output_audio": "output",
    "output_image": "output",
}
_INPUT_METERS = ("input", "cached_input", "cache_write", "cache_write_1h", "input_audio", "input_image")
_OUTPUT_METERS = ("output", "reasoning", "output_audio", "output_image")
# Tier conditions: thresholds a usage must exceed (strictly) for the tier to apply.
TIER_CONDITIONS: tuple[str, ...] = ("input_tokens_over", "total_tokens_over")

Rates = dict[str, int]


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _resolve(explicit: dict[str, int]) -> Rates:
    """Every meter's price from the explicitly set ones (unset token meters fall back)."""
    rates: Rates = {}
    for meter in METERS:
        source = meter
        while source not in explicit and source in METER_FALLBACK:
            source = METER_FALLBACK[source]
        rates[meter] = explicit.get(source, 0)
    return rates


def split_usage(usage: Usage) -> dict[str, int]:
    """Token counts per token meter; every input and output token lands in exactly one meter.

    ``usage`` reports cached, cache-write, audio and image tokens as parts of ``input_tokens``
    (and reasoning, audio, image as parts of ``output_tokens``). They are taken in that order,
    each clamped to what is left, so a provider that over-reports a part never bills a token
    twice; what remains is billed at the plain ``input`` / ``output`` price.
    """
    left = max(usage.input_tokens, 0)

    def take(count: int) -> int:
        nonlocal left
        taken = min(max(count, 0), left)
        left -= taken
        return taken

    cached = take(usage.cached_input_tokens)
    write = take(usage.cache_write_tokens)
    write_1h = min(max(usage.cache_write_1h_tokens, 0), write)
    counts = {
        "cached_input": cached,
        "cache_write": write - write_1h,
        "cache_write_1h": write_1h,
        "input_audio": take(usage.input_audio_tokens),
        "input_image": take(usage.input_image_tokens),
        "input": left,
    }
    left = max(usage.output_tokens, 0)
    counts["reasoning"] = take(usage.reasoning_tokens)
    counts["output_audio"] = take(usage.output_audio_tokens)
    counts["output_image"] = take(usage.output_image_tokens)
    counts["output"] = left
    return counts


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Prices that replace the card's own for the meters they name, when ``when`` holds.

    ``when`` and ``prices`` are ``(name, value)`` pairs (hashable); build one with :meth:`of`.
    Every condition must hold: ``input_tokens_over`` compares ``usage.input_tokens`` (cached and
    cache-write tokens included), ``total_tokens_over`` input plus output.
    """

    when: tuple[tuple[str, int], ...]
    prices: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, when: Mapping[str, int], **prices: int) -> PriceTier:
        return cls(tuple(when.items()), tuple(prices.items()))

    def holds(self, input_tokens: int, total_tokens: int) -> bool:
        """Whether a usage with these counts is in this tier."""
        counts = {"input_tokens_over": input_tokens, "total_tokens_over": total_tokens}
        return all(counts[condition] > threshold for condition, threshold in self.when)


@dataclass(frozen=True, slots=True)
class PriceCard:
    """Prices in nano-USD: token meters per 1M tokens, unit meters per unit.

    A token meter left ``None`` costs what its fallback costs (``METER_FALLBACK``: cache reads,
    cache writes, audio and image input cost ``input``; reasoning, audio and image output cost
    ``output``). ``tiers`` apply in order and the last one whose condition holds wins; a tier
    overrides only the meters it names.
    """

    input: int = 0
    output: int = 0
    cached_input: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None
    reasoning: int | None = None
    input_audio: int | None = None
    output_audio: int | None = None
    input_image: int | None = None
    output_image: int | None = None
    request: int = 0
    image: int = 0
    video_second: int = 0
    tiers: tuple[PriceTier, ...] = ()
    # Resolved rates of the base card, then of each tier (computed once, at construction).
    _rates: tuple[Rates, ...] = field(init=False, repr=False, compare=False, default=())
    # Per entry of _rates: (dearest input meter, dearest output meter, request, image,
    # video_second): what worst_case needs, so a reservation costs a few comparisons.
    _dearest: tuple[tuple[int, int, int, int, int], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        explicit = {meter: getattr(self, meter) for meter in METERS if getattr(self, meter) is not None}
        resolved = [_resolve(explicit)]
        resolved += [_resolve({**explicit, **dict(tier.prices)}) for tier in self.tiers]
        object.__setattr__(self, "_rates", tuple(resolved))
        dearest = tuple(
            (
                max(rates[m] for m in _INPUT_METERS),
                max(rates[m] for m in _OUTPUT_METERS),
                rates["request"],
                rates["image"],
                rates["video_second"],
            )
            for rates in resolved
        )
        object.__setattr__(self, "_dearest", dearest)

    @classmethod
    def from_config(cls, spec: Mapping[str, Any]) -> PriceCard:
        """A card from a validated ``price:`` mapping (decimal strings in USD per 1M / per unit)."""
        meters = {meter: parse_price(spec[meter]) for meter in METERS if meter in spec}
        tiers = tuple(
            PriceTier(
                when=tuple((name, int(value)) for name, value in tier["when"].items()),
                prices=tuple((meter, parse_price(tier[meter])) for meter in METERS if meter in tier),
            )
            for tier in spec.get("tiers") or ()
        )
        return cls(**meters, tiers=tiers)

    def rates(self) -> Rates:
        """Every meter's base price (before tiers), fallbacks resolved."""
        return dict(self._rates[0])

    def rates_for(self, usage: Usage) -> Rates:
        """The prices that apply to ``usage``: the last matching tier's, else the base card's."""
        return dict(self._rates_for(usage.input_tokens, usage.total_tokens))

    def _rates_for(self, input_tokens: int, total_tokens: int) -> Rates:
        for index in range(len(self.tiers) - 1, -1, -1):
            if self.tiers[index].holds(input_tokens, total_tokens):
                return self._rates[index + 1]
        return self._rates[0]

    @property
    def is_free(self) -> bool:
        return not any(any(rates.values()) for rates in self._rates)

    def _scaled_parts(self, usage: Usage, requests: int, images: int, video_seconds: int) -> dict[str, int]:
        """Each meter's exact amount in nano-USD x 1M (so token meters stay integers)."""
        rates = self._rates_for(usage.input_tokens, usage.total_tokens)
        parts = {meter: count * rates[meter] for meter, count in split_usage(usage).items() if count}
        units = {"request": requests, "image": images, "video_second": video_seconds}
        for meter, count in units.items():
            if count:
                parts[meter] = count * rates[meter] * TOKENS_PER_PRICE_UNIT
        return parts

    def cost(self, usage: Usage, *, requests: int = 1, images: int = 0, video_seconds: int = 0) -> int:
        """Exact cost of one generation in nano-USD: every meter summed exactly, rounded up once.

        ``requests`` counts the per-request fee (one generation is one request), ``images`` the
        generated images and ``video_seconds`` the seconds of generated video.
        """
        scaled = sum(self._scaled_parts(usage, requests, images, video_seconds).values())
        return _ceil_div(scaled, TOKENS_PER_PRICE_UNIT)

    def cost_breakdown(
        self, usage: Usage, *, requests: int = 1, images: int = 0, video_seconds: int = 0
    ) -> dict[str, int]:
        """Nano-USD per meter used, summing exactly to :meth:`cost`.

        Each part is its exact amount rounded down or up: the nano-USD that rounding the total
        up adds go to the parts with the largest fractions (ties to the earlier meter).
        """
        parts = {
            meter: amount
            for meter, amount in self._scaled_parts(usage, requests, images, video_seconds).items()
            if amount
        }
        total = _ceil_div(sum(parts.values()), TOKENS_PER_PRICE_UNIT)
        floors = {meter: amount // TOKENS_PER_PRICE_UNIT for meter, amount in parts.items()}
        extra = total - sum(floors.values())
        by_fraction = sorted(parts, key=lambda meter: -(parts[meter] % TOKENS_PER_PRICE_UNIT))
        for meter in by_fraction[:extra]:
            floors[meter] += 1
        return floors

    def worst_case(
        self,
        max_input_tokens: int,
        max_output_tokens: int,
        *,
        requests: int = 1,
        images: int = 0,
        video_seconds: int = 0,
    ) -> int:
        """Upper bound of the cost for a request, rounded up: what a reservation holds.

        Every token is priced at the dearest meter it could land in, under every tier that a
        request within these limits could reach (tier conditions only grow with usage).
        """
        input_price, output_price, request, image, video_second = self._dearest[0]
        if self.tiers:
            total = max_input_tokens + max_output_tokens
            for tier, dearest in zip(self.tiers, self._dearest[1:], strict=True):
                if tier.holds(max_input_tokens, total):
                    input_price = max(input_price, dearest[0])
                    output_price = max(output_price, dearest[1])
                    request = max(request, dearest[2])
                    image = max(image, dearest[3])
                    video_second = max(video_second, dearest[4])
        unit_cost = requests * request + images * image + video_seconds * video_second
        scaled = (
            max_input_tokens * input_price
            + max_output_tokens * output_price
            + unit_cost * TOKENS_PER_PRICE_UNIT
        )
        return _ceil_div(scaled, TOKENS_PER_PRICE_UNIT)
