"""Request metrics kept as plain integers, exposed in Prometheus format only when scraped.

Recording a request is a few dict and list increments (well under a microsecond), instead of
several locked ``prometheus_client`` metric updates; the collector turns the totals into metric
families at scrape time. With ``serve --workers N`` each worker also writes a :class:`WorkerSample`
of its numbers to a file once a second and a scrape merges them (``metrics_workers.py``).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .store.records import GenerationRecord

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OVERHEAD_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LOOP_LAG_INTERVAL_S = 0.5

Labels = tuple[str, ...]
Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class _Histogram:
    """Fixed buckets per label tuple: counts, sum."""

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # per label tuple: one count per bucket, then +Inf, then the sum
        self.series: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        series[bisect.bisect_left(self.bounds, value)] += 1
        series[-1] += value

    def copy(self) -> dict[Labels, list[float]]:
        return {labels: list(series) for labels, series in self.series.items()}


@dataclass(slots=True)
class WorkerSample:
    """One worker's numbers at one moment: what a scrape shows, and what a snapshot file holds.

    Counters and histograms are keyed by label tuple; a histogram series is the count per
    bucket, then +Inf, then the sum (the bounds are the module constants).
    """

    pid: int
    taken_at: float  # time.time()
    responses: dict[Labels, int] = field(default_factory=dict)  # surface, status code
    generations: dict[Labels, int] = field(default_factory=dict)  # surface, model, provider, status
    tokens: dict[Labels, int] = field(default_factory=dict)  # model, provider, kind
    cost_nanos: dict[Labels, int] = field(default_factory=dict)  # model, provider
    latency: dict[Labels, list[float]] = field(default_factory=dict)  # surface, streamed
    upstream_latency: dict[Labels, list[float]] = field(default_factory=dict)  # provider
    overhead: dict[Labels, list[float]] = field(default_factory=dict)  # surface
    in_flight: int = 0
    writer_depth: int = 0
    spool_records: int = 0
    spool_bytes: int = 0
    refused_records: int = 0  # set aside because the database refused them (store/isolation.py)
    loop_lag_s: float = 0.0
    loop_lag_max_s: float = 0.0
    # process_* values by family name (only filled for the multi-worker exposition)
    process: dict[str, float] = field(default_factory=dict)


class Metrics(Collector):
    """Everything the gateway counts; register it with a ``CollectorRegistry`` to expose it."""

    def __init__(
        self,
        writer_depth: Callable[[], int],
        spool_usage: Callable[[], tuple[int, int]] | None = None,
        refused_records: Callable[[], int] | None = None,
    ) -> None:
        self._writer_depth = writer_depth
        self._spool_usage = spool_usage  # (records, bytes) in the writer's on-disk spool
        self._refused_records = refused_records  # records the writer set aside so far
        self.in_flight = 0
        self.responses: dict[Labels, int] = defaultdict(int)  # (surface, status code)
        self.generations: dict[Labels, int] = defaultdict(int)  # surface, model, provider, status
        self.tokens: dict[Labels, int] = defaultdict(int)  # model, provider, kind
        self.cost_nanos: dict[Labels, int] = defaultdict(int)  # model, provider
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
    def sample(self) -> WorkerSample:
        """A copy of every number now (done at scrape or snapshot time, never per request)."""
        spool_records, spool_bytes = self._spool_usage() if self._spool_usage is not None else (0, 0)
        return WorkerSample(
            pid=os.getpid(),
            taken_at=time.time(),
            responses=dict(self.responses),
            generations=dict(self.generations),
            tokens=dict(self.tokens),
            cost_nanos=dict(self.cost_nanos),
            latency=self.latency.copy(),
            upstream_latency=self.upstream_latency.copy(),
            overhead=self.overhead.copy(),
            in_flight=self.in_flight,
            writer_depth=self._writer_depth(),
            spool_records=spool_records,
            spool_bytes=spool_bytes,
            refused_records=self._refused_records() if self._refused_records is not None else 0,
            loop_lag_s=self.loop_lag_s,
            loop_lag_max_s=self.loop_lag_max_s,
        )

    def collect(self) -> Iterator[Family]:
        yield from metric_families([self.sample()])


# --- merging several workers' samples into metric families -----------------------------------


def _summed(samples: Sequence[WorkerSample], attribute: str) -> dict[Labels, int]:
    """Integer counters summed exactly (cost in nano-USD stays an integer until exposition)."""
    total: dict[Labels, int] = {}
    for sample in samples:
        for labels, value in getattr(sample, attribute).items():
            total[labels] = total.get(labels, 0) + value
    return total


def _summed_histogram(
    samples: Sequence[WorkerSample], attribute: str, width: int
) -> dict[Labels, list[float]]:
    total: dict[Labels, list[float]] = {}
    for sample in samples:
        for labels, series in getattr(sample, attribute).items():
            if len(series) != width:  # a file from a build with other buckets: not mergeable
                continue
            into = total.get(labels)
            if into is None:
                total[labels] = list(series)
            else:
                for index, value in enumerate(series):
                    into[index] += value
    return total


def _histogram_family(
    name: str,
    documentation: str,
    label_names: list[str],
    bounds: tuple[float, ...],
    series: dict[Labels, list[float]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=label_names)
    for labels, counts in series.items():
        cumulative, buckets = 0.0, []
        for bound, count in zip((*bounds, float("inf")), counts[:-1], strict=True):
            cumulative += count
            buckets.append((_bound_text(bound), cumulative))
        family.add_metric(list(labels), buckets, counts[-1])
    return family


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _counter(
    name: str, documentation: str, label_names: list[str], values: Mapping[Labels, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=label_names)
    for labels, value in values.items():
        family.add_metric(list(labels), value)
    return family


def metric_families(samples: Sequence[WorkerSample]) -> Iterator[Family]:
    """The Prometheus families of one or more workers' samples.

    Counters and histograms are summed over the workers; ``in_flight``, the writer queue and
    spool gauges are summed too (totals are what an alert wants); event-loop lag is per worker,
    labelled ``pid``, like ``aistats_worker_info{pid}`` (one per worker merged).
    """
    yield _counter(
        "aistats_responses",
        "HTTP responses of the inference surfaces",
        ["surface", "status"],
        _summed(samples, "responses"),
    )
    yield _counter(
        "aistats_generations",
        "Generations by outcome",
        ["surface", "model", "provider", "status"],
        _summed(samples, "generations"),
    )
    yield _counter(
        "aistats_tokens", "Tokens billed", ["model", "provider", "kind"], _summed(samples, "tokens")
    )
    cost = {labels: nanos / 1e9 for labels, nanos in _summed(samples, "cost_nanos").items()}
    yield _counter("aistats_cost_usd", "Cost charged, in USD", ["model", "provider"], cost)
    latency_width = len(LATENCY_BUCKETS_S) + 2
    yield _histogram_family(
        "aistats_request_duration_seconds",
        "Whole request time (streams: until the last event)",
        ["surface", "streamed"],
        LATENCY_BUCKETS_S,
        _summed_histogram(samples, "latency", latency_width),
    )
    yield _histogram_family(
        "aistats_upstream_duration_seconds",
        "Upstream time of successful attempts",
        ["provider"],
        LATENCY_BUCKETS_S,
        _summed_histogram(samples, "upstream_latency", latency_width),
    )
    yield _histogram_family(
        "aistats_gateway_overhead_seconds",
        "Gateway time excluding the upstream wait",
        ["surface"],
        OVERHEAD_BUCKETS_S,
        _summed_histogram(samples, "overhead", len(OVERHEAD_BUCKETS_S) + 2),
    )
    info = GaugeMetricFamily(
        "aistats_worker_info", "A worker process whose numbers are included", labels=["pid"]
    )
    lag = GaugeMetricFamily("aistats_event_loop_lag_seconds", "Last measured event-loop lag", labels=["pid"])
    lag_max = GaugeMetricFamily(
        "aistats_event_loop_lag_max_seconds", "Largest event-loop lag seen", labels=["pid"]
    )
    for sample in samples:
        pid = str(sample.pid)
        info.add_metric([pid], 1)
        lag.add_metric([pid], sample.loop_lag_s)
        lag_max.add_metric([pid], sample.loop_lag_max_s)
    yield info
    yield lag
    yield lag_max
    yield GaugeMetricFamily(
        "aistats_in_flight_requests",
        "Inference requests in progress (all workers)",
        value=sum(s.in_flight for s in samples),
    )
    yield GaugeMetricFamily(
        "aistats_writer_queue_depth",
        "Usage records waiting to be written (all workers)",
        value=sum(s.writer_depth for s in samples),
    )
    yield GaugeMetricFamily(
        "aistats_writer_spool_records",
        "Usage records in the workers' on-disk spools (the database was unreachable)",
        value=sum(s.spool_records for s in samples),
    )
    yield GaugeMetricFamily(
        "aistats_writer_spool_bytes",
        "Size of the workers' on-disk spools",
        value=sum(s.spool_bytes for s in samples),
    )
    yield CounterMetricFamily(
        "aistats_writer_refused_records",
        "Usage records the database refused on their own, set aside under <data_dir>/spool/refused",
        value=sum(s.refused_records for s in samples),
    )
