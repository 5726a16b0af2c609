"""What every service shares: the error type, a page of results, and timestamp formatting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class ServiceError(Exception):
    """A request the service refuses. ``reason`` is the error contract's reason (DESIGN.md
    "Errors"); ``param`` names the offending field, ``code`` is a stable machine-readable code."""

    def __init__(
        self, reason: str, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.param = param
        self.code = code


def invalid(message: str, param: str | None = None, code: str = "invalid_request") -> ServiceError:
    """A 400-class refusal: the input is wrong; ``param`` names the field."""
    return ServiceError("validation_error", message, param=param, code=code)


def not_found(message: str, param: str | None = None) -> ServiceError:
    """The thing asked for does not exist (or is outside the caller's workspace)."""
    return ServiceError("not_found_error", message, param=param, code="not_found")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated listing; ``next_cursor`` is the ``after`` of the next page."""

    items: Sequence[T]
    has_more: bool
    next_cursor: str | None


def page_size(limit: int | None) -> int:
    """A validated page size (default 100, at most 1000)."""
    if limit is None:
        return DEFAULT_PAGE_SIZE
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise invalid(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}", param="limit")
    return limit


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix (``2026-11-28T09:30:00.123456Z``); None stays None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def clean_text(value: object, param: str, *, max_chars: int, required: bool = False) -> str | None:
    """A short single-line label: stripped, non-empty, no control characters, at most ``max_chars``."""
    if value is None:
        if required:
            raise invalid(f"{param} is required", param=param)
        return None
    if not isinstance(value, str):
        raise invalid(f"{param} must be a string", param=param)
    text = value.strip()
    if not text:
        raise invalid(f"{param} must not be empty", param=param)
    if len(text) > max_chars:
        raise invalid(f"{param} must be at most {max_chars} characters", param=param)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise invalid(f"{param} must not contain control characters", param=param)
    return text
