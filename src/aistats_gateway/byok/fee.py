"""What a request served with a workspace's own key is billed: a percentage of the list cost."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction


class FeeError(ValueError):
    """``byok.fee_percent`` is not a percentage between 0 and 100."""


@dataclass(frozen=True, slots=True)
class ByokFee:
    """``percent`` of the list cost, rounded up to the next nano-USD (exact integer arithmetic)."""

    numerator: int  # the percentage as an exact fraction: numerator / denominator
    denominator: int = 1

    @classmethod
    def parse(cls, text: str) -> ByokFee:
        """A fee from a decimal string such as ``"0"``, ``"5"`` or ``"2.5"`` (percent)."""
        try:
            value = Decimal(str(text).strip())
        except InvalidOperation:
            raise FeeError(f'must be a decimal percentage such as "5" or "2.5", not {text!r}') from None
        if not value.is_finite() or value < 0 or value > 100:
            raise FeeError("must be a percentage between 0 and 100")
        fraction = Fraction(value)
        return cls(fraction.numerator, fraction.denominator)

    @property
    def percent(self) -> str:
        """The percentage as a plain decimal string (for docs and the API)."""
        return format(Decimal(self.numerator) / Decimal(self.denominator), "f")

    def apply(self, list_cost_nano: int) -> int:
        """The fee for a request whose list price is ``list_cost_nano`` (ceil, never negative)."""
        if list_cost_nano <= 0 or self.numerator == 0:
            return 0
        return -(-list_cost_nano * self.numerator // (self.denominator * 100))


NO_FEE = ByokFee(0)
