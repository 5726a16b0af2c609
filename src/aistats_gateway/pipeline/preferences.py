"""The request's ``provider`` object (OpenRouter's provider routing preferences), validated.

Fields acted on: ``order``, ``only``, ``ignore``, ``allow_fallbacks``, ``sort`` (a string, or
``{"by", "partition"}``), ``max_price`` (``prompt`` / ``completion`` in USD per 1M tokens;
``request`` / ``image`` are accepted and always met, since the gateway charges neither) and
``require_parameters``.

Accepted and checked but not acted on, so clients written for OpenRouter keep working:
``data_collection``, ``zdr``, ``enforce_distillable_text`` and ``quantizations``. The catalog
carries no data-retention or quantization facts about routes; a self-hosting operator picks
the providers it trusts in the config, which is where that policy lives.

A ``null`` field means "not given", as SDKs that serialise unset options send it; so does an
empty ``only`` list.
Provider names are matched case-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.errors import GatewayError, invalid
from ..money import PriceError, parse_usd

SORTS = ("price", "latency", "throughput")
PARTITIONS = ("model", "none")
_PRICE_KEYS = ("prompt", "completion", "request", "image")
_KNOWN = frozenset(
    {
        "order",
        "only",
        "ignore",
        "allow_fallbacks",
        "sort",
        "max_price",
        "require_parameters",
        "data_collection",
        "quantizations",
        "zdr",
        "enforce_distillable_text",
    }
)


@dataclass(frozen=True, slots=True)
class ProviderPreferences:
    """Validated routing preferences. Names are lower-cased; prices are nano-USD per 1M tokens."""

    order: tuple[str, ...] = ()
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    allow_fallbacks: bool = True
    sort: str | None = None
    partition: str = "model"
    max_prompt_price: int | None = None
    max_completion_price: int | None = None
    require_parameters: bool = False


DEFAULT_PREFERENCES = ProviderPreferences()


def parse_preferences(raw: object) -> ProviderPreferences:
    """Validate a request's ``provider`` object; a 400 names the bad field (``provider.sort``)."""
    if raw is None:
        return DEFAULT_PREFERENCES
    if not isinstance(raw, dict):
        raise invalid("'provider' must be an object of routing preferences", param="provider")
    fields: dict[str, Any] = {}
    # Only the fields present are looked at: a typical object sets one or two.
    for key, value in raw.items():
        if key not in _KNOWN:
            raise invalid(
                f"Unknown field 'provider.{key}' (expected one of: {', '.join(sorted(_KNOWN))})",
                param=f"provider.{key}",
            )
        if value is None:
            continue
        if key == "order":
            fields["order"] = tuple(dict.fromkeys(_names(value, key)))
        elif key in ("only", "ignore"):
            names = _names(value, key)
            if names:  # an empty list restricts nothing (some SDKs always send one)
                fields[key] = frozenset(names)
        elif key in ("allow_fallbacks", "require_parameters"):
            fields[key] = _bool(value, key)
        elif key == "sort":
            fields["sort"], fields["partition"] = _sort(value)
        elif key == "max_price":
            fields["max_prompt_price"], fields["max_completion_price"] = _max_price(value)
        elif key == "data_collection":
            if value not in ("allow", "deny"):
                raise invalid(
                    '\'provider.data_collection\' must be "allow" or "deny"', param="provider.data_collection"
                )
        elif key == "quantizations":
            _names(value, key)
        else:  # zdr, enforce_distillable_text
            _bool(value, key)
    return ProviderPreferences(**fields)


def _names(value: object, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise invalid(f"'provider.{field}' must be a list of provider names", param=f"provider.{field}")
    return [v.strip().lower() for v in value]


def _bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"'provider.{field}' must be a boolean", param=f"provider.{field}")
    return value


def _sort(value: object) -> tuple[str, str]:
    if isinstance(value, str):
        if value not in SORTS:
            raise _bad_sort("provider.sort")
        return value, "model"
    if not isinstance(value, dict):
        raise _bad_sort("provider.sort")
    for key in value:
        if key not in ("by", "partition"):
            raise invalid(
                f"Unknown field 'provider.sort.{key}' (expected 'by' and 'partition')",
                param=f"provider.sort.{key}",
            )
    by = value.get("by")
    if by not in SORTS:
        raise _bad_sort("provider.sort.by")
    partition = value.get("partition")
    if partition is None:
        return by, "model"
    if partition not in PARTITIONS:
        raise invalid(
            '\'provider.sort.partition\' must be "model" or "none"', param="provider.sort.partition"
        )
    return by, partition


def _bad_sort(param: str) -> GatewayError:
    return invalid(f"'{param}' must be one of: {', '.join(SORTS)}", param=param)


def _max_price(value: object) -> tuple[int | None, int | None]:
    if not isinstance(value, dict):
        raise invalid(
            '\'provider.max_price\' must be an object like {"prompt": 1, "completion": 2} '
            "(USD per 1M tokens)",
            param="provider.max_price",
        )
    limits: dict[str, int | None] = {}
    for key, amount in value.items():
        if key not in _PRICE_KEYS:
            raise invalid(
                f"Unknown field 'provider.max_price.{key}' (expected one of: {', '.join(_PRICE_KEYS)})",
                param=f"provider.max_price.{key}",
            )
        limits[key] = _usd(amount, f"provider.max_price.{key}")
    return limits.get("prompt"), limits.get("completion")


def _usd(value: Any, param: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(f"'{param}' must be a number of USD (per 1M tokens)", param=param)
    try:
        nanos = parse_usd(str(value))
    except PriceError as exc:
        raise invalid(f"'{param}': {exc}", param=param) from None
    if nanos < 0:
        raise invalid(f"'{param}' must not be negative", param=param)
    return nanos
