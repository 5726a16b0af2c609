"""The in-memory health tracker: breaker state machine, moving averages, shared-view merging."""

from __future__ import annotations

from typing import Any

import pytest

from aistats_gateway.pipeline.health import BreakerConfig, HealthTracker, SharedHealth

P, M = "openai", "gpt-4o-mini"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(**config: Any) -> tuple[HealthTracker, FakeClock]:
    clock = FakeClock()
    return HealthTracker(BreakerConfig(**config), clock=clock), clock


def fail(tracker: HealthTracker, times: int = 1, key: tuple[str, str] = (P, M)) -> None:
    for _ in range(times):
        tracker.record_failure(*key, kind="server_error")


def succeed(tracker: HealthTracker, times: int = 1, key: tuple[str, str] = (P, M)) -> None:
    for _ in range(times):
        tracker.record_success(*key, latency_s=1.0)


def open_breaker(tracker: HealthTracker, clock: FakeClock) -> None:
    fail(tracker, tracker.config.failure_threshold)
    assert tracker.snapshot(P, M).state == "open"


# -- closed -> open ----------------------------------------------------------------------------


def test_a_fresh_key_is_closed_and_allowed_with_empty_averages() -> None:
    tracker, _ = make()
    assert tracker.allow(P, M)
    snap = tracker.snapshot(P, M)
    assert snap.state == "closed"
    assert snap.latency_ewma_s is None and snap.ttft_ewma_s is None and snap.throughput_tps is None
    assert snap.error_rate == 0.0
    assert snap.open_until is None
    assert snap.failures_in_window == 0 and snap.requests_in_window == 0


def test_threshold_failures_within_the_window_open_the_breaker() -> None:
    tracker, clock = make(failure_threshold=5, window_s=30.0, open_s=30.0)
    for _ in range(4):
        fail(tracker)
        clock.advance(5.0)
    assert tracker.snapshot(P, M).state == "closed"
    assert tracker.allow(P, M)
    fail(tracker)
    snap = tracker.snapshot(P, M)
    assert snap.state == "open"
    assert snap.open_until == clock.now + 30.0
    assert snap.failures_in_window == 5
    assert not tracker.allow(P, M)


def test_failures_older_than_the_window_do_not_count() -> None:
    tracker, clock = make(failure_threshold=5, window_s=30.0)
    fail(tracker, 4)
    clock.advance(31.0)
    fail(tracker)
    snap = tracker.snapshot(P, M)
    assert snap.state == "closed"
    assert snap.failures_in_window == 1


def test_failures_still_inside_the_window_count() -> None:
    tracker, clock = make(failure_threshold=5, window_s=30.0)
    fail(tracker, 4)
    clock.advance(25.0)
    fail(tracker)
    assert tracker.snapshot(P, M).state == "open"


def test_error_rate_opens_the_breaker_once_min_requests_are_reached() -> None:
    tracker, _ = make(failure_threshold=100, error_rate_threshold=0.5, min_requests=10)
    succeed(tracker, 5)
    fail(tracker, 4)
    snap = tracker.snapshot(P, M)
    assert (snap.state, snap.requests_in_window, snap.failures_in_window) == ("closed", 9, 4)
    fail(tracker)  # 5 of 10
    assert tracker.snapshot(P, M).state == "open"


def test_a_high_error_rate_below_min_requests_does_not_open() -> None:
    tracker, _ = make(failure_threshold=100, error_rate_threshold=0.5, min_requests=10)
    succeed(tracker)
    fail(tracker, 8)
    assert tracker.snapshot(P, M).state == "closed"


def test_an_error_rate_below_the_threshold_does_not_open() -> None:
    tracker, _ = make(failure_threshold=100, error_rate_threshold=0.5, min_requests=10)
    succeed(tracker, 11)
    fail(tracker, 10)
    assert tracker.snapshot(P, M).state == "closed"


def test_every_failure_kind_counts() -> None:
    tracker, _ = make(failure_threshold=5)
    for kind in ("connect", "timeout", "rate_limited", "server_error", "dropped"):
        tracker.record_failure(P, M, kind=kind)
    assert tracker.snapshot(P, M).state == "open"


def test_an_unknown_failure_kind_is_rejected() -> None:
    tracker, _ = make()
    with pytest.raises(ValueError, match="unknown failure kind"):
        tracker.record_failure(P, M, kind="bad_request")


# -- open -> half-open -> closed / open ----------------------------------------------------------


def test_open_becomes_half_open_after_open_s() -> None:
    tracker, clock = make(open_s=30.0)
    open_breaker(tracker, clock)
    clock.advance(29.9)
    assert not tracker.allow(P, M)
    assert tracker.snapshot(P, M).state == "open"
    clock.advance(0.1)
    assert tracker.snapshot(P, M).state == "half_open"


def test_half_open_allows_exactly_the_configured_concurrent_probes() -> None:
    tracker, clock = make(open_s=30.0, half_open_probes=2)
    open_breaker(tracker, clock)
    clock.advance(30.0)
    assert [tracker.allow(P, M) for _ in range(3)] == [True, True, False]
    assert tracker.snapshot(P, M).state == "half_open"


def test_a_single_probe_by_default() -> None:
    tracker, clock = make(open_s=10.0)
    open_breaker(tracker, clock)
    clock.advance(10.0)
    assert tracker.allow(P, M)
    assert not tracker.allow(P, M)


def test_a_probe_success_closes_the_breaker_and_restarts_the_counts() -> None:
    tracker, clock = make(failure_threshold=5, window_s=30.0, open_s=10.0)
    open_breaker(tracker, clock)
    clock.advance(10.0)
    assert tracker.allow(P, M)
    tracker.record_success(P, M, latency_s=0.5)
    snap = tracker.snapshot(P, M)
    assert snap.state == "closed" and snap.open_until is None
    assert tracker.allow(P, M) and tracker.allow(P, M)
    fail(tracker)  # the five failures that opened it are still within 30 s, but do not count
    snap = tracker.snapshot(P, M)
    assert (snap.state, snap.failures_in_window, snap.requests_in_window) == ("closed", 1, 2)


def test_a_probe_failure_reopens_for_another_open_s() -> None:
    tracker, clock = make(open_s=30.0)
    open_breaker(tracker, clock)
    clock.advance(30.0)
    assert tracker.allow(P, M)
    clock.advance(2.0)
    tracker.record_failure(P, M, kind="timeout", latency_s=2.0)
    snap = tracker.snapshot(P, M)
    assert snap.state == "open"
    assert snap.open_until == clock.now + 30.0
    clock.advance(29.0)
    assert not tracker.allow(P, M)
    clock.advance(1.0)
    assert tracker.allow(P, M)


def test_a_probe_that_is_never_recorded_is_released_after_open_s() -> None:
    tracker, clock = make(open_s=10.0)
    open_breaker(tracker, clock)
    clock.advance(10.0)
    assert tracker.allow(P, M)
    clock.advance(9.0)
    assert not tracker.allow(P, M)
    clock.advance(1.0)
    assert tracker.allow(P, M)


def test_results_of_requests_in_flight_while_open_change_nothing() -> None:
    tracker, clock = make(open_s=30.0)
    open_breaker(tracker, clock)
    until = tracker.snapshot(P, M).open_until
    clock.advance(1.0)
    succeed(tracker)
    fail(tracker, 3)
    snap = tracker.snapshot(P, M)
    assert (snap.state, snap.open_until) == ("open", until)


# -- moving averages ------------------------------------------------------------------------------


def test_latency_and_ttft_ewma_start_at_the_first_sample_then_smooth() -> None:
    tracker, _ = make(ewma_alpha=0.2)
    tracker.record_success(P, M, latency_s=1.0, ttft_s=0.5)
    tracker.record_success(P, M, latency_s=2.0, ttft_s=1.0)
    snap = tracker.snapshot(P, M)
    assert snap.latency_ewma_s == pytest.approx(1.2)
    assert snap.ttft_ewma_s == pytest.approx(0.6)


def test_error_rate_is_an_ewma_of_outcomes_starting_at_zero() -> None:
    tracker, _ = make(ewma_alpha=0.2, failure_threshold=100)
    fail(tracker)
    assert tracker.snapshot(P, M).error_rate == pytest.approx(0.2)
    fail(tracker)
    assert tracker.snapshot(P, M).error_rate == pytest.approx(0.36)
    succeed(tracker)
    assert tracker.snapshot(P, M).error_rate == pytest.approx(0.288)


def test_throughput_is_output_tokens_over_the_time_after_the_first_token() -> None:
    tracker, _ = make(ewma_alpha=0.5)
    tracker.record_success(P, M, latency_s=2.5, ttft_s=0.5, output_tokens=200)
    assert tracker.snapshot(P, M).throughput_tps == pytest.approx(100.0)
    tracker.record_success(P, M, latency_s=1.5, ttft_s=0.5, output_tokens=300)
    assert tracker.snapshot(P, M).throughput_tps == pytest.approx(200.0)


@pytest.mark.parametrize(
    ("latency_s", "ttft_s", "output_tokens"),
    [(2.0, None, 100), (2.0, 0.5, 0), (0.5, 0.5, 100), (0.4, 0.5, 100)],
    ids=["no-ttft", "no-tokens", "no-generation-time", "ttft-after-latency"],
)
def test_throughput_is_not_measured_without_meaningful_timing(
    latency_s: float, ttft_s: float | None, output_tokens: int
) -> None:
    tracker, _ = make()
    tracker.record_success(P, M, latency_s=latency_s, ttft_s=ttft_s, output_tokens=output_tokens)
    snap = tracker.snapshot(P, M)
    assert snap.throughput_tps is None
    assert snap.latency_ewma_s == latency_s


def test_only_timeouts_feed_failure_latency_into_the_latency_average() -> None:
    tracker, _ = make(ewma_alpha=0.5, failure_threshold=100)
    tracker.record_success(P, M, latency_s=1.0)
    tracker.record_failure(P, M, kind="server_error", latency_s=0.01)
    tracker.record_failure(P, M, kind="connect", latency_s=0.01)
    assert tracker.snapshot(P, M).latency_ewma_s == pytest.approx(1.0)
    tracker.record_failure(P, M, kind="timeout", latency_s=5.0)
    assert tracker.snapshot(P, M).latency_ewma_s == pytest.approx(3.0)


# -- keys -----------------------------------------------------------------------------------------


def test_keys_are_independent() -> None:
    tracker, _ = make(failure_threshold=3)
    fail(tracker, 3, key=(P, M))
    tracker.record_success(P, "gpt-4o", latency_s=0.7)
    assert tracker.snapshot(P, M).state == "open"
    assert not tracker.allow(P, M)
    assert tracker.allow(P, "gpt-4o")
    assert tracker.allow("azure", M)
    states = tracker.states()
    assert set(states) == {(P, M), (P, "gpt-4o"), ("azure", M)}
    assert states[(P, "gpt-4o")].state == "closed"
    assert states[(P, "gpt-4o")].latency_ewma_s == 0.7
    assert states[("azure", M)].failures_in_window == 0


# -- merging the shared view (what health_sync feeds in) --------------------------------------------


WALL = 1_700_000_000.0  # the tracker's fake clock reads 1000.0 at this wall time


def test_a_foreign_opening_is_adopted_on_the_local_clock() -> None:
    tracker, clock = make(open_s=30.0)
    tracker.apply_shared(P, M, SharedHealth(WALL, opened_at=WALL - 5.0, open_until=WALL + 25.0))
    snap = tracker.snapshot(P, M)
    assert (snap.state, snap.open_until) == ("open", clock.now + 25.0)
    assert not tracker.allow(P, M)
    assert tracker.sync_view(WALL)[(P, M)].version == 0  # adopted, so not published again


def test_a_foreign_transition_older_than_the_local_one_is_ignored() -> None:
    tracker, clock = make(open_s=10.0)
    open_breaker(tracker, clock)
    clock.advance(10.0)
    assert tracker.allow(P, M)
    succeed(tracker)  # closed locally at 1010
    stale = SharedHealth(WALL + 10.0, opened_at=WALL + 5.0, open_until=WALL + 35.0)
    tracker.apply_shared(P, M, stale)
    assert tracker.snapshot(P, M).state == "closed"


def test_a_foreign_close_closes_a_half_open_breaker_once() -> None:
    tracker, clock = make(open_s=10.0)
    open_breaker(tracker, clock)
    clock.advance(10.0)
    assert tracker.allow(P, M)
    shared = SharedHealth(WALL + 10.0, closed_at=WALL + 9.5)
    tracker.apply_shared(P, M, shared)
    assert tracker.snapshot(P, M).state == "closed"
    open_breaker(tracker, clock)  # reopened locally afterwards: the same close is not adopted again
    tracker.apply_shared(P, M, shared)
    assert tracker.snapshot(P, M).state == "open"


def test_an_adopted_transition_read_again_does_not_reset_the_probes() -> None:
    tracker, clock = make(open_s=30.0)
    tracker.apply_shared(P, M, SharedHealth(WALL, opened_at=WALL, open_until=WALL + 30.0))
    clock.advance(30.0)
    assert tracker.allow(P, M)  # the probe
    # The same event on the next sync; wall and monotonic clocks were read a moment apart.
    tracker.apply_shared(P, M, SharedHealth(WALL + 29.999, opened_at=WALL, open_until=WALL + 30.0))
    assert tracker.snapshot(P, M).state == "half_open"
    assert not tracker.allow(P, M)


def test_shared_counts_from_all_instances_open_the_breaker() -> None:
    tracker, _ = make(failure_threshold=5, window_s=30.0)
    fail(tracker, 2)
    tracker.apply_shared(P, M, SharedHealth(WALL, buckets=((WALL - 3.0, 10, 4),)))
    assert tracker.snapshot(P, M).state == "closed"
    tracker.apply_shared(P, M, SharedHealth(WALL, buckets=((WALL - 3.0, 10, 4), (WALL, 2, 1))))
    snap = tracker.snapshot(P, M)
    assert (snap.state, snap.failures_in_window) == ("open", 5)
    assert tracker.sync_view(WALL)[(P, M)].event == ("open", WALL, WALL + 30.0)


def test_shared_buckets_outside_the_window_do_not_count() -> None:
    tracker, _ = make(failure_threshold=5, window_s=30.0)
    tracker.apply_shared(P, M, SharedHealth(WALL, buckets=((WALL - 31.0, 5, 5), (WALL - 3.0, 1, 1))))
    snap = tracker.snapshot(P, M)
    assert (snap.state, snap.failures_in_window) == ("closed", 1)
