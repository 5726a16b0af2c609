"""Integer nano-USD arithmetic and price-card evaluation.

Money never touches a float inside the gateway: amounts are ``int`` nano-USD (1e-9 USD).
Prices come from config and the catalog as decimal strings in USD per 1M tokens (or per unit),
and are held as integer nano-USD per 1M units, so a price like ``"0.0375"`` stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext

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


def _per_million(units: int, price_per_million: int) -> int:
    return units * price_per_million


@dataclass(frozen=True, slots=True)
class PriceCard:
    """Token prices in nano-USD per 1M tokens. ``cached_input`` defaults to ``input``."""

    input: int = 0
    output: int = 0
    cached_input: int | None = None

    @property
    def is_free(self) -> bool:
        return self.input == 0 and self.output == 0 and not self.cached_input

    def cost(self, usage: Usage) -> int:
        """Exact cost of ``usage`` in nano-USD, rounded half up once at the end.

        Cached input tokens are part of ``usage.input_tokens`` and billed at the cached price;
        reasoning tokens are part of ``usage.output_tokens`` and billed as output.
        """
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        scaled = (
            _per_million(usage.input_tokens - cached, self.input)
            + _per_million(cached, cached_price)
            + _per_million(usage.output_tokens, self.output)
        )
        return (scaled + TOKENS_PER_PRICE_UNIT // 2) // TOKENS_PER_PRICE_UNIT

    def worst_case(self, max_input_tokens: int, max_output_tokens: int) -> int:
        """Upper bound of the cost for a request, rounded up: what a reservation holds."""
        input_price = max(self.input, self.cached_input or 0)
        scaled = _per_million(max_input_tokens, input_price) + _per_million(max_output_tokens, self.output)
        return -(-scaled // TOKENS_PER_PRICE_UNIT)
