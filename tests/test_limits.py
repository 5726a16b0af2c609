"""Per-key limits and the free tier: windows on an injected clock, every limit kind, spend holds
under concurrency, in memory and in a real Redis (docs/limits.md)."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aistats_gateway.api.errors import GatewayError
from aistats_gateway.ids import new_generation_id
from aistats_gateway.key_limits import KeyLimits
from aistats_gateway.pipeline.auth import Principal
from aistats_gateway.pipeline.limit_windows import (
    bucket_at,
    day_period,
    duration,
    month_period,
    seconds_until_below,
    seconds_until_empty,
)
from aistats_gateway.pipeline.limits import Limiter, LimitTicket
from aistats_gateway.settings import FreeTierSettings
from aistats_gateway.store.db import create_engine
from aistats_gateway.store.migrate import migrate
from aistats_gateway.store.records import GenerationRecord
from aistats_gateway.store.repositories import Store
from tests.conftest import require_service

T0 = 60.0 * 29_000_000  # the start of a minute (and of a UTC day: 29e6 minutes = 20138.88… days)
USD = 1_000_000_000
PAID = "openai/gpt-4o-mini"
FREE = "google/gemma-3-27b:free"


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on its own event loop (fixtures pass through the wrapped signature)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def principal(limits: KeyLimits, kid: str | None = None, workspace: str = "ws_a") -> Principal:
    return Principal(kid or uuid.uuid4().hex[:12], workspace, "test", "inference", limits)


def limiter(
    clock: Clock,
    *,
    topped_up: Callable[[str], bool] = lambda _: False,
    free: FreeTierSettings | None = None,
    redis_url: str | None = None,
    prefix: str = "aistats:limits:",
) -> Limiter:
    return Limiter(
        free or FreeTierSettings(), topped_up, redis_url=redis_url, redis_prefix=prefix, clock=clock
    )


async def refused(coro: object) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await coro  # type: ignore[misc]
    return caught.value


# --- window arithmetic ----------------------------------------------------------------------


def test_sliding_window_weight_falls_across_the_bucket() -> None:
    assert bucket_at(T0, 60) == (T0 // 60, 1.0)
    assert bucket_at(T0 + 15, 60)[1] == pytest.approx(0.75)


def test_seconds_until_below_walks_into_the_next_bucket_when_the_current_one_is_full() -> None:
    # 10 counted in this bucket (none before), limit 10: the next bucket starts at +60 with
    # weight 1, and the estimate drops below 10 just after it starts.
    assert seconds_until_below(10, 0, T0, 60, 10) == pytest.approx(60, abs=0.01)
    # 20 in this bucket, limit 10: 60 s to the next bucket, then half of it decays in 30 s.
    assert seconds_until_below(20, 0, T0, 60, 10) == pytest.approx(90, abs=0.01)
    # 10 in the previous bucket at 30 s in (weight 0.5: estimate 5) + 6 now = 11, limit 10:
    # the previous bucket loses 1/6 per second, so 6 s.
    assert seconds_until_below(6, 10, T0 + 30, 60, 10) == pytest.approx(6, abs=0.01)
    assert seconds_until_below(1, 0, T0, 60, 10) == 0


def test_seconds_until_empty() -> None:
    assert seconds_until_empty(0, 0, T0, 60) == 0
    assert seconds_until_empty(0, 5, T0 + 20, 60) == pytest.approx(40)
    assert seconds_until_empty(1, 5, T0 + 20, 60) == pytest.approx(100)


def test_calendar_periods_are_utc_and_december_rolls_into_january() -> None:
    moment = datetime(2025, 12, 31, 23, 59, tzinfo=UTC).timestamp()
    assert day_period(moment) == ("2025-12-31", datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    assert month_period(moment) == ("2025-12", datetime(2026, 1, 1, tzinfo=UTC).timestamp())


def test_durations_use_openais_reset_format() -> None:
    assert duration(0.25) == "250ms"
    assert duration(12.5) == "12.5s"
    assert duration(360) == "6m0s"
    assert duration(3 * 3600 + 121) == "3h2m1s"


# --- in memory --------------------------------------------------------------------------------


@run
async def test_a_key_without_limits_on_a_paid_model_gets_no_ticket() -> None:
    assert await limiter(Clock(T0)).admit(principal(KeyLimits()), PAID, free=False) is None


@run
async def test_requests_per_minute_refuses_with_retry_after_and_headers_then_slides() -> None:
    clock = Clock(T0)
    limits = limiter(clock)
    key = principal(KeyLimits(requests_per_minute=3))
    tickets = [await limits.admit(key, PAID, free=False) for _ in range(3)]
    assert [t.headers["x-ratelimit-remaining-requests"] for t in tickets if t] == ["2", "1", "0"]
    assert tickets[0] and tickets[0].headers["x-ratelimit-limit-requests"] == "3"
    error = await refused(limits.admit(key, PAID, free=False))
    assert (error.status, error.reason, error.code) == (429, "rate_limit_error", "rate_limit_exceeded")
    # The 3 requests weigh fully until the next bucket starts, then decay: just over 60 s.
    assert error.retry_after == 61
    headers = error.headers("gen_x")
    assert headers["retry-after"] == "61"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "3 requests per minute" in error.message
    # Next bucket, 20 s in: the previous bucket weighs 2/3 → estimate 2 → one request fits.
    clock.now = T0 + 80
    assert await limits.admit(key, PAID, free=False) is not None
    await refused(limits.admit(key, PAID, free=False))


@run
async def test_tokens_per_minute_admits_while_under_and_counts_actual_tokens_at_settlement() -> None:
    clock = Clock(T0)
    limits = limiter(clock)
    key = principal(KeyLimits(tokens_per_minute=100))
    first = await limits.admit(key, PAID, free=False)
    assert first is not None and first.headers["x-ratelimit-remaining-tokens"] == "100"
    # Admission only checks the window is under the limit: a second request in flight is fine.
    second = await limits.admit(key, PAID, free=False)
    assert second is not None
    first.settle(150, 0)
    error = await refused(limits.admit(key, PAID, free=False))
    assert error.status == 429 and "100 tokens per minute" in error.message
    assert error.headers()["x-ratelimit-remaining-tokens"] == "0"
    second.settle(10**6, 0)  # a second settle of the same ticket is ignored
    second.settle(10**6, 0)
    clock.now = T0 + 60 + 59  # next bucket, nearly over: 150 * (1/60) + 1M … still over
    await refused(limits.admit(key, PAID, free=False))
    clock.now = T0 + 180
    assert await limits.admit(key, PAID, free=False) is not None


@run
async def test_allowed_models_refuses_the_model_and_any_fallback_with_403_naming_them() -> None:
    limits = limiter(Clock(T0))
    key = principal(KeyLimits(allowed_models=("openai/*", "*:free")))
    assert await limits.admit(key, PAID, free=False) is None  # only a model filter: nothing to count
    error = await refused(limits.admit(key, "anthropic/claude-haiku", free=False))
    assert (error.status, error.reason, error.code, error.param) == (
        403,
        "authorization_error",
        "model_not_allowed",
        "model",
    )
    assert "'anthropic/claude-haiku'" in error.message and "openai/*, *:free" in error.message
    error = await refused(limits.admit(key, PAID, free=False, fallbacks=[FREE, "x-ai/grok"]))
    assert error.param == "models" and "'x-ai/grok'" in error.message


@run
async def test_free_tier_per_minute_and_per_day_with_the_higher_day_limit_after_a_top_up() -> None:
    clock = Clock(T0 + 3600)
    topped_up: set[str] = set()
    limits = limiter(
        clock,
        topped_up=lambda ws: ws in topped_up,
        free=FreeTierSettings(requests_per_minute=2, requests_per_day=3, requests_per_day_topped_up=5),
    )
    key = principal(KeyLimits())
    assert await limits.admit(key, PAID, free=False) is None  # paid models: no free tier
    assert await limits.admit(key, FREE, free=True) is not None
    ticket = await limits.admit(key, FREE, free=True)
    assert ticket is not None and ticket.headers["x-ratelimit-remaining-requests"] == "0"
    error = await refused(limits.admit(key, FREE, free=True))
    assert error.code == "free_tier_rate_limit" and error.status == 429
    clock.now += 120
    assert await limits.admit(key, FREE, free=True) is not None
    clock.now += 120
    error = await refused(limits.admit(key, FREE, free=True))
    assert error.code == "free_tier_daily_limit"
    assert "3 requests per UTC day" in error.message and "5 per day once" in error.message
    midnight = day_period(clock.now)[1]
    assert error.retry_after == pytest.approx(midnight - clock.now, abs=1)
    # A workspace that has added credits gets the higher daily limit.
    topped_up.add("ws_a")
    assert await limits.admit(key, FREE, free=True) is not None
    assert await limits.admit(key, FREE, free=True) is not None
    await refused(limits.admit(key, FREE, free=True))
    # Another key of the same workspace has its own counters.
    assert await limits.admit(principal(KeyLimits()), FREE, free=True) is not None
    # The next UTC day starts afresh.
    clock.now = midnight + 1
    assert await limits.admit(key, FREE, free=True) is not None


@run
async def test_fifty_concurrent_admissions_against_a_spend_limit_covering_ten_admit_ten() -> None:
    limits = limiter(Clock(T0))
    key = principal(KeyLimits(spend_daily_nano=USD))
    results = await asyncio.gather(
        *(limits.admit(key, PAID, free=False, hold_nano=USD // 10) for _ in range(50)),
        return_exceptions=True,
    )
    admitted = [r for r in results if isinstance(r, LimitTicket)]
    refusals = [r for r in results if isinstance(r, GatewayError)]
    assert len(admitted) == 10 and len(refusals) == 40
    assert refusals[0].status == 429 and refusals[0].code == "spend_limit_exceeded"
    assert "held by requests in flight" in refusals[0].message
    # Settling at the actual cost frees the difference: 10 x $0.02 spent → $0.80 left.
    for ticket in admitted:
        ticket.settle(100, USD // 50)
    again = [await limits.admit(key, PAID, free=False, hold_nano=USD // 10) for _ in range(8)]
    assert all(again)
    await refused(limits.admit(key, PAID, free=False, hold_nano=USD // 10))


@run
async def test_spend_refusals_daily_is_429_until_midnight_total_is_403() -> None:
    clock = Clock(T0 + 7200)
    limits = limiter(clock)
    daily = principal(KeyLimits(spend_daily_nano=USD))
    error = await refused(limits.admit(daily, PAID, free=False, hold_nano=2 * USD))
    assert error.status == 429 and error.retry_after == pytest.approx(
        day_period(clock.now)[1] - clock.now, abs=1
    )
    assert "daily limit of $1" in error.message
    total = principal(KeyLimits(spend_total_nano=USD, spend_monthly_nano=5 * USD))
    error = await refused(limits.admit(total, PAID, free=False, hold_nano=2 * USD))
    assert (error.status, error.reason, error.retry_after) == (403, "authorization_error", None)
    assert error.headers()["x-should-retry"] == "false"
    # A free request (nothing held) is never refused by a spend limit.
    spent = principal(KeyLimits(spend_total_nano=0))
    assert await limits.admit(spent, FREE, free=True) is not None


@run
async def test_a_failed_request_releases_its_hold_without_spending() -> None:
    limits = limiter(Clock(T0))
    key = principal(KeyLimits(spend_total_nano=USD))
    ticket = await limits.admit(key, PAID, free=False, hold_nano=USD)
    assert ticket is not None
    await refused(limits.admit(key, PAID, free=False, hold_nano=1))
    ticket.settle(0, 0)
    assert await limits.admit(key, PAID, free=False, hold_nano=USD) is not None


@run
async def test_status_reports_limits_and_usage_per_window() -> None:
    clock = Clock(T0)
    limits = limiter(clock)
    key = principal(KeyLimits(requests_per_minute=10, spend_daily_nano=USD, spend_total_nano=3 * USD))
    ticket = await limits.admit(key, PAID, free=False, hold_nano=USD // 4)
    assert ticket is not None
    ticket.settle(50, USD // 10)
    status = await limits.status(key)
    assert status["requests_per_minute"] == {"limit": 10, "used": 1, "remaining": 9, "resets_in_s": 120.0}
    assert status["tokens_per_minute"] is None
    assert status["spend"]["daily"]["spent"] == "0.1"
    assert status["spend"]["daily"]["remaining"] == "0.9"
    assert status["spend"]["monthly"] is None
    assert status["spend"]["total"]["remaining_nanos"] == 3 * USD - USD // 10
    assert status["free_tier"]["requests_per_day"]["limit"] == 50
    assert status["limits"]["requests_per_minute"] == 10


# --- seeded from the database ---------------------------------------------------------------


def _record(kid: str, workspace_id: str, cost: int, created_at: datetime) -> GenerationRecord:
    return GenerationRecord(
        id=new_generation_id(),
        workspace_id=workspace_id,
        key_id=kid,
        endpoint="chat",
        model=PAID,
        provider="fake",
        upstream_model="gpt-4o-mini",
        status="completed",
        streamed=False,
        finish_reason="stop",
        input_tokens=1,
        cached_input_tokens=0,
        output_tokens=1,
        reasoning_tokens=0,
        cost_nano=cost,
        latency_ms=1,
        ttft_ms=None,
        error=None,
        created_at=created_at,
    )


@run
async def test_spend_counters_are_seeded_from_the_records_at_start_up(tmp_path: Path) -> None:
    sqlite_store = Store(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"))
    await migrate(sqlite_store.engine)
    workspace = await sqlite_store.ensure_workspace("default")
    now = datetime(2025, 6, 15, 12, tzinfo=UTC)
    records = [
        _record("k1", workspace.id, 3 * USD, now.replace(hour=1)),  # today
        _record("k1", workspace.id, 2 * USD, now.replace(day=2)),  # this month
        _record("k1", workspace.id, 1 * USD, now.replace(month=1)),  # earlier
    ]
    await sqlite_store.write_batch(records, [])
    limits = limiter(Clock(now.timestamp()))
    await limits.start(sqlite_store)
    try:
        key = principal(
            KeyLimits(spend_daily_nano=4 * USD, spend_monthly_nano=6 * USD, spend_total_nano=7 * USD),
            kid="k1",
        )
        status = await limits.status(key)
        assert [status["spend"][p]["spent"] for p in ("daily", "monthly", "total")] == ["3", "5", "6"]
        error = await refused(limits.admit(key, PAID, free=False, hold_nano=USD + 1))
        assert "$1 left of its daily limit of $4" in error.message
    finally:
        await limits.stop()
        await sqlite_store.engine.dispose()


# --- Redis ----------------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/0"


def redis_prefix() -> str:
    return f"aistats:test-limits:{uuid.uuid4().hex[:8]}:"


@run
async def test_redis_two_limiters_share_one_request_counter(redis_url: str) -> None:
    clock = Clock(T0)
    prefix = redis_prefix()
    first, second = (
        limiter(clock, redis_url=redis_url, prefix=prefix),
        limiter(clock, redis_url=redis_url, prefix=prefix),
    )
    key = principal(KeyLimits(requests_per_minute=7))
    try:
        results = await asyncio.gather(
            *(lim.admit(key, PAID, free=False) for lim in (first, second) for _ in range(10)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, LimitTicket) for r in results) == 7
        assert all(r.on_redis for r in results if isinstance(r, LimitTicket))
        error = await refused(first.admit(key, PAID, free=False))
        assert error.retry_after == 61
        # Previous bucket at half weight: 3.5, and admitted while under 7 → 3.5 … 6.5: four more.
        clock.now = T0 + 60 + 30
        assert all([await second.admit(key, PAID, free=False) for _ in range(4)])
        await refused(first.admit(key, PAID, free=False))
    finally:
        await first.stop()
        await second.stop()


@run
async def test_redis_fifty_concurrent_spend_admissions_over_two_limiters_admit_ten(redis_url: str) -> None:
    clock = Clock(T0)
    prefix = redis_prefix()
    limiters = [limiter(clock, redis_url=redis_url, prefix=prefix) for _ in range(2)]
    key = principal(KeyLimits(spend_monthly_nano=USD, tokens_per_minute=1000))
    try:
        results = await asyncio.gather(
            *(limiters[i % 2].admit(key, PAID, free=False, hold_nano=USD // 10) for i in range(50)),
            return_exceptions=True,
        )
        admitted = [r for r in results if isinstance(r, LimitTicket)]
        assert len(admitted) == 10
        for ticket in admitted:
            ticket.settle(100, USD // 20)  # settled in the background
        for lim in limiters:
            await lim.stop()  # waits for the settlements
        reader = limiter(clock, redis_url=redis_url, prefix=prefix)
        status = await reader.status(key)
        assert status["spend"]["monthly"]["spent"] == "0.5"
        assert status["spend"]["monthly"]["held"] == "0"
        assert status["tokens_per_minute"]["used"] == 1000
        await refused(reader.admit(key, PAID, free=False))  # 1000 tokens used: TPM refuses
        await reader.stop()
    finally:
        for lim in limiters:
            await lim.stop()


@run
async def test_redis_hold_of_a_vanished_instance_lapses(redis_url: str) -> None:
    clock = Clock(T0)
    prefix = redis_prefix()
    crashed = limiter(clock, redis_url=redis_url, prefix=prefix)
    key = principal(KeyLimits(spend_total_nano=USD))
    assert await crashed.admit(key, PAID, free=False, hold_nano=USD) is not None  # never settled
    await crashed.stop()
    other = limiter(clock, redis_url=redis_url, prefix=prefix)
    try:
        await refused(other.admit(key, PAID, free=False, hold_nano=USD))
        clock.now = T0 + 3601  # holds lapse after an hour
        assert await other.admit(key, PAID, free=False, hold_nano=USD) is not None
    finally:
        await other.stop()


@run
async def test_redis_unreachable_falls_back_to_memory_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    limits = limiter(Clock(T0), redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    key = principal(KeyLimits(requests_per_minute=2))
    caplog.set_level(logging.WARNING, logger="aistats_gateway.pipeline.limits")
    try:
        tickets = [await limits.admit(key, PAID, free=False) for _ in range(2)]
        assert all(t is not None and not t.on_redis for t in tickets)
        await refused(limits.admit(key, PAID, free=False))  # exact in this instance meanwhile
        assert len([r for r in caplog.records if "Redis unreachable" in r.message]) == 1
        assert (await limits.status(key))["shared"] is False
    finally:
        await limits.stop()
