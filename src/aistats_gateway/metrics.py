"""Request metrics kept as plain integers, exposed in Prometheus format only when scraped.

Recording a request is a few dict and list increments (well under a microsecond), instead of
several locked ``prometheus_client`` metric updates; the collector turns the totals into metric
families at scrape time. Each worker process keeps and serves its own numbers.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .store.records import GenerationRecord

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OVERHEAD_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LOOP_LAG_INTERVAL_S = 0.5


class _Histogram:
    """Fixed buckets per label tuple: counts, sum."""

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            # one count per bucket, then +Inf, then the sum
            series = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        series[bisect.bisect_left(self.bounds, value)] += 1
        series[-1] += value

    def family(self, name: str, documentation: str, label_names: list[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=label_names)
        for labels, series in self.series.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self.bounds, float("inf")), series[:-1], strict=True):
                cumulative += count
                buckets.append((_bound_text(bound), cumulative))
            family.add_metric(list(labels), buckets, series[-1])
        return family


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class Metrics(Collector):
    """Everything the gateway counts; register it with a ``CollectorRegistry`` to expose it."""

    def __init__(
        self, writer_depth: Callable[[], int], spool_usage: Callable[[], tuple[int, int]] | None = None
    ) -> None:
        self._writer_depth = writer_depth
        self._spool_usage = spool_usage  # (records, bytes) in the writer's on-disk spool
        self.in_flight = 0
        self.responses: dict[tuple[str, str], int] = defaultdict(int)  # (surface, status code)
        self.generations: dict[tuple[str, str, str, str], int] = defaultdict(
            int
        )  # surface, model, provider, status
        self.tokens: dict[tuple[str, str, str], int] = defaultdict(int)  # model, provider, kind
        self.cost_nanos: dict[tuple[str, str], int] = defaultdict(int)  # model, provider
        self.latency = _Histogram(LATENCY_BUCKETS_S)  # surface, streamed
        self.upstream_latency = _Histogram(LATENCY_BUCKETS_S)  # provider
        self.overhead = _Histogram(OVERHEAD_BUCKETS_S)  # surface
        self.loop_lag_s = 0.0
        self.loop_lag_max_s = 0.0
        self._lag_task: asyncio.Task[None] | None = None

    # --- recording (hot path) -------------------------------------------------------------
    def response(self, surface: str, status: int) -> None:
        self.responses[(surface, str(status))] += 1

    def generation(self, record: GenerationRecord, upstream_s: float | None) -> None:
        provider = record.provider or ""
        self.generations[(record.endpoint, record.model, provider, record.status)] += 1
        if record.input_tokens or record.output_tokens:
            self.tokens[(record.model, provider, "input")] += record.input_tokens
            self.tokens[(record.model, provider, "cached_input")] += record.cached_input_tokens
            self.tokens[(record.model, provider, "output")] += record.output_tokens
            self.tokens[(record.model, provider, "reasoning")] += record.reasoning_tokens
        if record.cost_nano:
            self.cost_nanos[(record.model, provider)] += record.cost_nano
        if record.latency_ms is not None:
            self.latency.observe(
                (record.endpoint, "true" if record.streamed else "false"), record.latency_ms / 1000
            )
        if upstream_s is not None:
            self.upstream_latency.observe((provider,), upstream_s)

    def gateway_overhead(self, surface: str, seconds: float) -> None:
        self.overhead.observe((surface,), seconds)

    # --- event-loop lag ----------------------------------------------------------------------
    async def _watch_loop_lag(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(LOOP_LAG_INTERVAL_S)
            self.loop_lag_s = max(0.0, time.perf_counter() - started - LOOP_LAG_INTERVAL_S)
            self.loop_lag_max_s = max(self.loop_lag_max_s, self.loop_lag_s)

    def start(self) -> None:
        self._lag_task = asyncio.create_task(self._watch_loop_lag(), name="aistats-loop-lag")

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            try:
                await self._lag_task
            except asyncio.CancelledError:
                pass

    # --- exposition ----------------------------------------------------------------------------
    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        responses = CounterMetricFamily(
            "aistats_responses", "HTTP responses of the inference surfaces", labels=["surface", "status"]
        )
        for (surface, status), count in self.responses.items():
            responses.add_metric([surface, status], count)
        yield responses
        generations = CounterMetricFamily(
            "aistats_generations", "Generations by outcome", labels=["surface", "model", "provider", "status"]
        )
        for labels, count in self.generations.items():
            generations.add_metric(list(labels), count)
        yield generations
        tokens = CounterMetricFamily("aistats_tokens", "Tokens billed", labels=["model", "provider", "kind"])
        for token_labels, count in self.tokens.items():
            tokens.add_metric(list(token_labels), count)
        yield tokens
        cost = CounterMetricFamily("aistats_cost_usd", "Cost charged, in USD", labels=["model", "provider"])
        for cost_labels, nanos in self.cost_nanos.items():
            cost.add_metric(list(cost_labels), nanos / 1e9)
        yield cost
        yield self.latency.family(
            "aistats_request_duration_seconds",
            "Whole request time (streams: until the last event)",
            ["surface", "streamed"],
        )
        yield self.upstream_latency.family(
            "aistats_upstream_duration_seconds", "Upstream time of successful attempts", ["provider"]
        )
        yield self.overhead.family(
            "aistats_gateway_overhead_seconds", "Gateway time excluding the upstream wait", ["surface"]
        )
        info = GaugeMetricFamily("aistats_worker_info", "This worker process", labels=["pid"])
        info.add_metric([str(os.getpid())], 1)
        yield info
        yield GaugeMetricFamily(
            "aistats_in_flight_requests", "Inference requests in progress", value=self.in_flight
        )
        yield GaugeMetricFamily(
            "aistats_event_loop_lag_seconds", "Last measured event-loop lag", value=self.loop_lag_s
        )
        yield GaugeMetricFamily(
            "aistats_event_loop_lag_max_seconds", "Largest event-loop lag seen", value=self.loop_lag_max_s
        )
        yield GaugeMetricFamily(
            "aistats_writer_queue_depth", "Usage records waiting to be written", value=self._writer_depth()
        )
        spool_records, spool_bytes = self._spool_usage() if self._spool_usage is not None else (0, 0)
        yield GaugeMetricFamily(
            "aistats_writer_spool_records",
            "Usage records in this worker's on-disk spool (the database was unreachable)",
            value=spool_records,
        )
        yield GaugeMetricFamily(
            "aistats_writer_spool_bytes", "Size of this worker's on-disk spool", value=spool_bytes
        )
