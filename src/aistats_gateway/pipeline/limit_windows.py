"""Time arithmetic for limits: sliding-window counters, UTC calendar periods, header durations.

A sliding-window counter keeps two fixed buckets of ``window_s`` (the current and the previous
one) and estimates the count over the last ``window_s`` as
``previous * (1 - elapsed_fraction) + current``: two integers per key, exact within one
request at a bucket boundary (docs/decisions/006-rate-limits.md).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

WINDOW_S = 60.0  # requests per minute, tokens per minute
_EPSILON_S = 0.001


def bucket_at(now: float, window_s: float) -> tuple[int, float]:
    """The bucket containing ``now`` and the weight of the previous bucket (1 → 0 across it)."""
    bucket = math.floor(now / window_s)
    return bucket, 1.0 - (now - bucket * window_s) / window_s


def estimate(current: int, previous: int, weight: float) -> float:
    """The sliding-window estimate of the count over the last window."""
    return previous * weight + current


def seconds_until_below(current: int, previous: int, now: float, window_s: float, target: float) -> float:
    """How long until the estimate drops under ``target`` with nothing new counted."""
    bucket, weight = bucket_at(now, window_s)
    if estimate(current, previous, weight) < target:
        return 0.0
    rest = (bucket + 1) * window_s - now  # left of the current bucket
    if previous > 0:
        # Within this bucket the previous bucket's share falls linearly to 0.
        wait = (previous * weight + current - target) / previous * window_s
        if wait < rest:
            return wait + _EPSILON_S
    if current < target:
        return rest + _EPSILON_S
    # In the next bucket the current one becomes the previous and decays.
    return rest + (current - target) / current * window_s + _EPSILON_S


def seconds_until_empty(current: int, previous: int, now: float, window_s: float) -> float:
    """How long until the window has forgotten everything counted so far."""
    bucket, _ = bucket_at(now, window_s)
    rest = (bucket + 1) * window_s - now
    if current > 0:
        return rest + window_s
    return rest if previous > 0 else 0.0


def day_period(now: float) -> tuple[str, float]:
    """The UTC calendar day of ``now``: its id (``2025-06-01``) and when it ends (epoch s)."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m-%d"), (start + timedelta(days=1)).timestamp()


def month_period(now: float) -> tuple[str, float]:
    """The UTC calendar month of ``now``: its id (``2025-06``) and when it ends (epoch s)."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.strftime("%Y-%m"), following.timestamp()


def period_starts(now: float) -> tuple[datetime, datetime]:
    """The start of the UTC day and of the UTC month of ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


def retry_after_s(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds))


def duration(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` format: ``250ms``, ``12.5s``, ``6m0s``, ``3h2m1s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"
