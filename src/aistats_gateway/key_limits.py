"""What an API key may do: spend limits, request and token rates, allowed models.

Set when a key is created and editable afterwards (management API and CLI). Stored in
``api_keys.limits`` as JSON with money in integer nano-USD; shown to users with money as decimal
USD strings. ``None`` everywhere means "no limit".

API / CLI shape::

    {"spend_usd": {"daily": "5", "monthly": "100", "total": null},
     "requests_per_minute": 60, "tokens_per_minute": 100000,
     "allowed_models": ["openai/*", "anthropic/claude-haiku-5-5"]}

Spend periods are calendar periods in UTC (day, month); ``total`` is over the key's life.
Model patterns are ``fnmatch`` globs over gateway model ids (``openai/*``, ``*:free``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .money import PriceError, format_usd, parse_usd

SPEND_PERIODS = ("daily", "monthly", "total")
_API_KEYS = frozenset({"spend_usd", "requests_per_minute", "tokens_per_minute", "allowed_models"})
_MODEL_PATTERN = re.compile(r"[A-Za-z0-9._:/*?\[\]-]{1,200}")
MAX_RATE = 10**9


class LimitsError(ValueError):
    """Invalid limits; ``field`` is the dotted path of the offending value (for a 400's ``param``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A key's limits; every field ``None`` means unlimited."""

    spend_daily_nano: int | None = None
    spend_monthly_nano: int | None = None
    spend_total_nano: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    allowed_models: tuple[str, ...] | None = None

    @property
    def unlimited(self) -> bool:
        return self == UNLIMITED

    def spend_limits(self) -> dict[str, int]:
        """The spend limits that are set, by period (``daily``, ``monthly``, ``total``)."""
        limits = {
            "daily": self.spend_daily_nano,
            "monthly": self.spend_monthly_nano,
            "total": self.spend_total_nano,
        }
        return {period: amount for period, amount in limits.items() if amount is not None}

    def allows_model(self, model_id: str) -> bool:
        """Whether ``model_id`` matches one of ``allowed_models`` (always, when unset)."""
        if self.allowed_models is None:
            return True
        return any(fnmatch.fnmatchcase(model_id, pattern) for pattern in self.allowed_models)

    # --- storage form (nano-USD ints) --------------------------------------------------------

    def to_json(self) -> dict[str, Any] | None:
        """The ``api_keys.limits`` column value (``None`` when unlimited)."""
        if self.unlimited:
            return None
        return {
            "spend_nano": {
                "daily": self.spend_daily_nano,
                "monthly": self.spend_monthly_nano,
                "total": self.spend_total_nano,
            },
            "rpm": self.requests_per_minute,
            "tpm": self.tokens_per_minute,
            "models": list(self.allowed_models) if self.allowed_models is not None else None,
        }

    @classmethod
    def from_json(cls, stored: Mapping[str, Any] | None) -> KeyLimits:
        """Read the column value written by :meth:`to_json` (``None``: unlimited)."""
        if not stored:
            return UNLIMITED
        spend = stored.get("spend_nano") or {}
        models = stored.get("models")
        return cls(
            spend_daily_nano=spend.get("daily"),
            spend_monthly_nano=spend.get("monthly"),
            spend_total_nano=spend.get("total"),
            requests_per_minute=stored.get("rpm"),
            tokens_per_minute=stored.get("tpm"),
            allowed_models=tuple(models) if models is not None else None,
        )

    # --- API form (USD strings) --------------------------------------------------------------

    def to_api(self) -> dict[str, Any]:
        """The ``limits`` object of the management API and ``keys list --json``."""

        def usd(nanos: int | None) -> str | None:
            return None if nanos is None else format_usd(nanos)

        return {
            "spend_usd": {
                "daily": usd(self.spend_daily_nano),
                "monthly": usd(self.spend_monthly_nano),
                "total": usd(self.spend_total_nano),
            },
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "allowed_models": list(self.allowed_models) if self.allowed_models is not None else None,
        }

    @classmethod
    def from_api(cls, body: Mapping[str, Any] | None, base: KeyLimits | None = None) -> KeyLimits:
        """Parse an API ``limits`` object; fields absent from ``body`` keep ``base``'s values
        (a partial update), an explicit ``null`` removes that limit. Raises :class:`LimitsError`."""
        current = base or UNLIMITED
        if body is None:
            return current
        if not isinstance(body, Mapping):
            raise LimitsError("limits", "must be an object")
        unknown = sorted(set(body) - _API_KEYS)
        if unknown:
            raise LimitsError(
                f"limits.{unknown[0]}", f"unknown limit; the limits are {', '.join(sorted(_API_KEYS))}"
            )
        values: dict[str, Any] = {
            "spend_daily_nano": current.spend_daily_nano,
            "spend_monthly_nano": current.spend_monthly_nano,
            "spend_total_nano": current.spend_total_nano,
            "requests_per_minute": current.requests_per_minute,
            "tokens_per_minute": current.tokens_per_minute,
            "allowed_models": current.allowed_models,
        }
        if "spend_usd" in body:
            spend = body["spend_usd"]
            if spend is None:
                spend = dict.fromkeys(SPEND_PERIODS)
            if not isinstance(spend, Mapping):
                raise LimitsError("limits.spend_usd", "must be an object with daily, monthly, total")
            for period, amount in spend.items():
                if period not in SPEND_PERIODS:
                    raise LimitsError(
                        f"limits.spend_usd.{period}", f"unknown period; use {', '.join(SPEND_PERIODS)}"
                    )
                values[f"spend_{period}_nano"] = _usd_limit(amount, f"limits.spend_usd.{period}")
        for field, attr in (
            ("requests_per_minute", "requests_per_minute"),
            ("tokens_per_minute", "tokens_per_minute"),
        ):
            if field in body:
                values[attr] = _rate(body[field], f"limits.{field}")
        if "allowed_models" in body:
            values["allowed_models"] = _patterns(body["allowed_models"])
        return cls(**values)


UNLIMITED = KeyLimits()


def _usd_limit(amount: object, field: str) -> int | None:
    if amount is None:
        return None
    if isinstance(amount, bool) or not isinstance(amount, (str, int, float)):
        raise LimitsError(field, 'must be a decimal USD amount as a string (e.g. "5.00") or null')
    try:
        nanos = parse_usd(amount)
    except PriceError as exc:
        raise LimitsError(field, str(exc)) from None
    if nanos < 0:
        raise LimitsError(field, "must not be negative")
    return nanos


def _rate(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RATE:
        raise LimitsError(field, f"must be an integer from 1 to {MAX_RATE}, or null")
    return value


def _patterns(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise LimitsError("limits.allowed_models", "must be a non-empty list of model ids or globs, or null")
    for i, pattern in enumerate(value):
        if not isinstance(pattern, str) or not _MODEL_PATTERN.fullmatch(pattern):
            raise LimitsError(f"limits.allowed_models[{i}]", f"not a model id or glob: {pattern!r}")
    return tuple(dict.fromkeys(value))
