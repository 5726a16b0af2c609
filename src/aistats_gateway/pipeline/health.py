"""Provider health per (provider name, provider model id): moving averages and a circuit breaker.

The attempt loop calls :meth:`HealthTracker.allow` before trying a candidate and one of
``record_success`` / ``record_failure`` after it; routing reads :meth:`HealthTracker.snapshot`.
Everything here runs on the event loop, in memory, in O(1): no locks, no I/O. Sharing between
gateway instances is done in the background by :mod:`.health_sync`, which reads
:meth:`HealthTracker.sync_view` and feeds back :meth:`HealthTracker.apply_shared`.

Breaker states:

* ``closed`` — every request is allowed. It opens when, within the last ``window_s``, there were
  ``failure_threshold`` failures, or at least ``min_requests`` requests with an error rate
  ``>= error_rate_threshold``.
* ``open`` — nothing is allowed for ``open_s``; then it is ``half_open``.
* ``half_open`` — at most ``half_open_probes`` requests are in flight at once (every ``True``
  from ``allow`` is a probe until the next ``record_*``). A success closes the breaker, a
  failure re-opens it for another ``open_s``. A probe that is never recorded (a cancelled
  request) stops counting after ``open_s``, so a lost probe cannot wedge the breaker.

The window is a ring of time buckets (``window_s / 30`` wide): a failure older than ``window_s``
is never counted, one younger than ``window_s`` minus a bucket always is. Counts restart when
the breaker closes, so the failures that opened it cannot re-open it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
FailureKind = Literal["connect", "timeout", "rate_limited", "server_error", "dropped"]

FAILURE_KINDS: frozenset[str] = frozenset({"connect", "timeout", "rate_limited", "server_error", "dropped"})
WINDOW_BUCKETS = 30
# Below this much generation time a tokens/second figure is noise, not a measurement.
_MIN_GENERATION_S = 0.001

Key = tuple[str, str]


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds of the circuit breaker and the smoothing of the moving averages."""

    failure_threshold: int = 5  # failures within window_s that open the breaker
    window_s: float = 30.0
    error_rate_threshold: float = 0.5  # or: error rate over the window >= this with >= min_requests
    min_requests: int = 10
    open_s: float = 30.0  # how long it stays open before half-open
    half_open_probes: int = 1  # concurrent probe requests allowed when half-open
    ewma_alpha: float = 0.2


@dataclass(frozen=True)
class HealthSnapshot:
    """Health of one (provider, model) at one moment; times are on the tracker's clock."""

    state: BreakerState
    latency_ewma_s: float | None  # successful requests (and timeouts, as a lower bound)
    ttft_ewma_s: float | None
    error_rate: float  # EWMA of outcomes, failure = 1, success = 0; starts at 0
    throughput_tps: float | None  # output tokens per second after the first token
    open_until: float | None  # when open / half_open: the end of the open period; None when closed
    failures_in_window: int  # since the breaker last closed, within window_s, all instances
    requests_in_window: int = 0


@dataclass(frozen=True)
class LocalHealth:
    """What this instance contributes to the shared view (:meth:`HealthTracker.sync_view`).

    ``requests`` and ``failures`` are running totals; ``version`` changes on every transition
    this instance made itself (not on adopted ones), and ``event`` is the latest of them:
    ``("open", opened_at, open_until)`` or ``("close", closed_at, closed_at)``, wall clock.
    """

    requests: int
    failures: int
    version: int
    event: tuple[Literal["open", "close"], float, float] | None


@dataclass(frozen=True)
class SharedHealth:
    """What other instances say about one (provider, model); times on the wall clock.

    ``opened_at``/``open_until`` and ``closed_at`` are the latest transitions published by
    *other* instances; ``buckets`` are ``(start, requests, failures)`` counted by all instances
    (this one included) in time buckets covering the last window.
    """

    wall_now: float
    opened_at: float | None = None
    open_until: float | None = None
    closed_at: float | None = None
    buckets: tuple[tuple[float, int, int], ...] = ()


class _Window:
    """Request and failure counts over a sliding window, as a ring of time buckets."""

    __slots__ = ("_fail", "_head", "_n", "_req", "_width", "failures", "requests")

    def __init__(self, window_s: float, buckets: int) -> None:
        self._n = buckets
        self._width = window_s / buckets
        self._req = [0] * buckets
        self._fail = [0] * buckets
        self._head: int | None = None  # index of the newest bucket
        self.requests = 0
        self.failures = 0

    def advance(self, now: float) -> int:
        """Drop buckets that slid out of the window by ``now``; the index of the newest bucket."""
        index = math.floor(now / self._width)
        head = self._head
        if head is not None and index <= head:
            return head
        self._head = index
        if head is None:
            return index
        if index - head >= self._n:
            self.reset(keep_head=True)
            return index
        for i in range(head + 1, index + 1):  # amortised O(1): each bucket is cleared once
            slot = i % self._n
            self.requests -= self._req[slot]
            self.failures -= self._fail[slot]
            self._req[slot] = 0
            self._fail[slot] = 0
        return index

    def add(self, now: float, failed: bool) -> None:
        slot = self.advance(now) % self._n
        self._req[slot] += 1
        self.requests += 1
        if failed:
            self._fail[slot] += 1
            self.failures += 1

    def reset(self, *, keep_head: bool = False) -> None:
        self._req = [0] * self._n
        self._fail = [0] * self._n
        self.requests = 0
        self.failures = 0
        if not keep_head:
            self._head = None


class _Entry:
    """Mutable health of one key; only :class:`HealthTracker` touches it."""

    __slots__ = (
        "changed_at",
        "closed_at",
        "error_rate",
        "event",
        "failures_total",
        "last_shared",
        "latency",
        "open_until",
        "probe_at",
        "probes",
        "requests_total",
        "shared",
        "state",
        "throughput",
        "ttft",
        "version",
        "window",
    )

    def __init__(self, config: BreakerConfig) -> None:
        self.state: BreakerState = "closed"
        self.open_until = 0.0
        self.closed_at = -math.inf  # counts before this (shared buckets included) are ignored
        self.changed_at = -math.inf  # last transition, local or adopted
        self.probes = 0
        self.probe_at = 0.0
        self.window = _Window(config.window_s, WINDOW_BUCKETS)
        self.shared: tuple[tuple[float, int, int], ...] = ()  # (start on our clock, requests, failures)
        self.last_shared: tuple[str, float] | None = None  # the shared transition adopted last
        self.latency: float | None = None
        self.ttft: float | None = None
        self.throughput: float | None = None
        self.error_rate = 0.0
        self.requests_total = 0
        self.failures_total = 0
        self.version = 0
        self.event: tuple[Literal["open", "close"], float, float] | None = None  # our clock


class HealthTracker:
    """Moving averages and a circuit breaker per (provider name, provider model id).

    Only provider-side trouble is a failure: connect errors, timeouts, 429, 5xx and streams
    dropped midway. Client-caused errors (4xx other than 429) say nothing about the provider's
    health; the caller does not record them at all, neither as failure nor as success.
    Keys are created on first use by any method, so the Redis sync follows them from then on.
    """

    def __init__(
        self, config: BreakerConfig = BreakerConfig(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}

    @property
    def config(self) -> BreakerConfig:
        return self._config

    # -- request path -------------------------------------------------------------------------

    def allow(self, provider: str, model: str) -> bool:
        """May a request go to this key now? In half-open, a ``True`` takes a probe slot."""
        entry = self._entry((provider, model))
        if entry.state == "closed":
            return True
        now = self._clock()
        if self._refresh(entry, now) == "open":
            return False
        if entry.probes and now - entry.probe_at >= self._config.open_s:
            entry.probes = 0  # probes granted this long ago were never recorded
        if entry.probes >= self._config.half_open_probes:
            return False
        entry.probes += 1
        entry.probe_at = now
        return True

    def record_success(
        self,
        provider: str,
        model: str,
        *,
        latency_s: float,
        ttft_s: float | None = None,
        output_tokens: int = 0,
    ) -> None:
        """A successful attempt: closes a half-open breaker and updates the moving averages.

        Throughput is ``output_tokens / (latency_s - ttft_s)``; it is only measured when the
        time to first token is known (streams) and some tokens came after it.
        """
        entry = self._entry((provider, model))
        now = self._clock()
        alpha = self._config.ewma_alpha
        entry.latency = _ewma(entry.latency, latency_s, alpha)
        if ttft_s is not None:
            entry.ttft = _ewma(entry.ttft, ttft_s, alpha)
            generation_s = latency_s - ttft_s
            if output_tokens > 0 and generation_s >= _MIN_GENERATION_S:
                entry.throughput = _ewma(entry.throughput, output_tokens / generation_s, alpha)
        entry.error_rate -= alpha * entry.error_rate
        entry.requests_total += 1
        if entry.state != "closed" and self._refresh(entry, now) == "half_open":
            self._close(entry, now, local=True)
        # A success while open came from a request let through before the breaker opened.
        entry.window.add(now, failed=False)

    def record_failure(self, provider: str, model: str, *, kind: str, latency_s: float | None = None) -> None:
        """A failed attempt (``kind`` in :data:`FAILURE_KINDS`); may open or re-open the breaker.

        ``latency_s`` only feeds the latency average for timeouts, where it is a lower bound of
        the provider's latency; fast errors (refused, 429, 5xx) would make a failing provider
        look quick.
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {sorted(FAILURE_KINDS)}")
        entry = self._entry((provider, model))
        now = self._clock()
        alpha = self._config.ewma_alpha
        entry.error_rate += alpha * (1.0 - entry.error_rate)
        if kind == "timeout" and latency_s is not None:
            entry.latency = _ewma(entry.latency, latency_s, alpha)
        entry.requests_total += 1
        entry.failures_total += 1
        entry.window.add(now, failed=True)
        state = self._refresh(entry, now) if entry.state != "closed" else "closed"
        if state == "half_open" or (state == "closed" and self._tripped(entry, now)):
            self._open(entry, now, local=True)

    # -- reading ------------------------------------------------------------------------------

    def snapshot(self, provider: str, model: str) -> HealthSnapshot:
        """The current health of one key."""
        entry = self._entry((provider, model))
        now = self._clock()
        state = self._refresh(entry, now)
        requests, failures = self._counts(entry, now)
        return HealthSnapshot(
            state=state,
            latency_ewma_s=entry.latency,
            ttft_ewma_s=entry.ttft,
            error_rate=entry.error_rate,
            throughput_tps=entry.throughput,
            open_until=None if state == "closed" else entry.open_until,
            failures_in_window=failures,
            requests_in_window=requests,
        )

    def states(self) -> dict[Key, HealthSnapshot]:
        """Snapshots of every key seen so far."""
        return {key: self.snapshot(*key) for key in list(self._entries)}

    # -- sharing between instances (used by health_sync) ---------------------------------------

    def sync_view(self, wall_now: float) -> dict[Key, LocalHealth]:
        """This instance's totals and latest own transition per key, times on the wall clock."""
        offset = wall_now - self._clock()
        view: dict[Key, LocalHealth] = {}
        for key, entry in self._entries.items():
            event = entry.event
            if event is not None:
                event = (event[0], event[1] + offset, event[2] + offset)
            view[key] = LocalHealth(entry.requests_total, entry.failures_total, entry.version, event)
        return view

    def apply_shared(self, provider: str, model: str, shared: SharedHealth) -> None:
        """Merge what other instances published: adopt a newer transition, count their requests.

        A transition from another instance is adopted when it is later than this key's last one
        (latest event wins). Shared counts then take part in the thresholds exactly like local
        ones (the larger of the two is used), so failures spread over instances open the breaker.
        """
        entry = self._entry((provider, model))
        now = self._clock()
        offset = now - shared.wall_now  # our clock = wall clock + offset
        latest: tuple[str, float] | None = None
        if shared.opened_at is not None and shared.open_until is not None:
            latest = ("open", shared.opened_at)
        if shared.closed_at is not None and (latest is None or shared.closed_at > latest[1]):
            latest = ("close", shared.closed_at)
        if latest is not None and latest != entry.last_shared and latest[1] + offset > entry.changed_at:
            entry.last_shared = latest
            if latest[0] == "open":
                assert shared.open_until is not None
                self._open(entry, latest[1] + offset, local=False, until=shared.open_until + offset)
            elif entry.state != "closed":
                self._close(entry, latest[1] + offset, local=False)
            else:  # we never saw it open: keep our own counts, only skip shared ones from before
                entry.closed_at = entry.changed_at = latest[1] + offset
        entry.shared = tuple((start + offset, req, fail) for start, req, fail in shared.buckets)
        if self._refresh(entry, now) == "closed" and self._tripped(entry, now):
            self._open(entry, now, local=True)

    # -- internals ----------------------------------------------------------------------------

    def _entry(self, key: Key) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(self._config)
        return entry

    def _refresh(self, entry: _Entry, now: float) -> BreakerState:
        """The state at ``now``: an open breaker whose time is up becomes half-open."""
        if entry.state == "open" and now >= entry.open_until:
            entry.state = "half_open"
            entry.probes = 0
        return entry.state

    def _counts(self, entry: _Entry, now: float) -> tuple[int, int]:
        """(requests, failures) in the window since the last close: local, or shared if larger."""
        window = entry.window
        window.advance(now)
        requests, failures = window.requests, window.failures
        if entry.shared:
            oldest = max(now - self._config.window_s, entry.closed_at)
            shared_requests = shared_failures = 0
            for start, bucket_requests, bucket_failures in entry.shared:
                if start >= oldest:
                    shared_requests += bucket_requests
                    shared_failures += bucket_failures
            requests = max(requests, shared_requests)
            failures = max(failures, shared_failures)
        return requests, failures

    def _tripped(self, entry: _Entry, now: float) -> bool:
        config = self._config
        requests, failures = self._counts(entry, now)
        if failures >= config.failure_threshold:
            return True
        return requests >= config.min_requests and failures >= config.error_rate_threshold * requests

    def _open(self, entry: _Entry, at: float, *, local: bool, until: float | None = None) -> None:
        open_until = at + self._config.open_s if until is None else until
        entry.state = "open"
        entry.open_until = open_until
        entry.changed_at = at
        entry.probes = 0
        if local:
            entry.version += 1
            entry.event = ("open", at, open_until)

    def _close(self, entry: _Entry, at: float, *, local: bool) -> None:
        entry.state = "closed"
        entry.closed_at = at
        entry.changed_at = at
        entry.probes = 0
        entry.window.reset()
        if local:
            entry.version += 1
            entry.event = ("close", at, at)


def _ewma(current: float | None, sample: float, alpha: float) -> float:
    return sample if current is None else current + alpha * (sample - current)
