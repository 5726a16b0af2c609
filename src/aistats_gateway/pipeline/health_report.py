"""What the attempt loop tells the health tracker about each provider call."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from ..providers.base import UpstreamConnectError, UpstreamFailure, UpstreamStatusError, UpstreamTimeout
from .health import HealthTracker


def failure_kind(failure: UpstreamFailure) -> str | None:
    """The health tracker's failure kind, or None when the caller (not the provider) was at fault."""
    if isinstance(failure, UpstreamTimeout):
        return "timeout"
    if isinstance(failure, UpstreamStatusError):
        if failure.status == 429:
            return "rate_limited"
        if failure.byok and failure.status in (401, 403):
            return None  # a workspace's own key was refused: says nothing about the provider
        if failure.status >= 500 or failure.status in (401, 403, 408):
            return "server_error"
        return None
    if isinstance(failure, UpstreamConnectError):
        return "connect"
    return "server_error"


def report_failure(
    health: HealthTracker, provider: str, model: str, failure: UpstreamFailure, elapsed_s: float
) -> None:
    """Count a failed attempt against the provider; a caller's 4xx shows the provider is up."""
    kind = failure_kind(failure)
    if kind is None:
        health.record_success(provider, model, latency_s=elapsed_s)
    else:
        health.record_failure(provider, model, kind=kind, latency_s=elapsed_s)


def retry_after_s(health: HealthTracker, keys: Iterable[tuple[str, str]], now: float | None = None) -> int:
    """Seconds until the first of these open circuits lets a probe through (at least 1)."""
    now = time.monotonic() if now is None else now
    waits = [
        snapshot.open_until - now
        for snapshot in (health.snapshot(provider, model) for provider, model in keys)
        if snapshot.open_until is not None
    ]
    return max(1, math.ceil(min(waits))) if waits else 1
