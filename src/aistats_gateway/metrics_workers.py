"""``/metrics`` over every worker of one ``serve --workers N`` (docs/decisions/010).

Each worker writes a :class:`~.metrics.WorkerSample` of its plain counters to
``<data_dir>/metrics/<supervisor pid>/<pid>.json`` once a second from a background task (nothing
per request), and a scrape answered by any worker merges its own live numbers with its siblings'
files. A file whose process is gone, or that has not been rewritten for ``stale_after_s``, is
left out and deleted (a live owner writes it again on its next tick). A single worker never
builds this: it serves :class:`~.metrics.Metrics` directly, with no file at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .metrics import Family, Metrics, WorkerSample, metric_families
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL_S = 1.0
STALE_AFTER_S = 10.0
_COUNTERS = ("responses", "generations", "tokens", "cost_nanos")
_HISTOGRAMS = ("latency", "upstream_latency", "overhead")
# Plain numbers of a worker (the refused-records count is a counter, summed like the gauges).
_GAUGES = (
    "in_flight",
    "writer_depth",
    "spool_records",
    "spool_bytes",
    "refused_records",
    "loop_lag_s",
    "loop_lag_max_s",
)


def group_directory(data_dir: Path) -> Path:
    """Where the workers of this process's supervisor (``serve``) keep their snapshots."""
    return data_dir / "metrics" / str(os.getppid())


def encode_sample(sample: WorkerSample) -> bytes:
    """A sample as JSON: label tuples become lists, ``[labels, value]`` pairs per series."""
    document: dict[str, Any] = {"pid": sample.pid, "taken_at": sample.taken_at, "process": sample.process}
    for name in (*_COUNTERS, *_HISTOGRAMS):
        document[name] = [[list(labels), value] for labels, value in getattr(sample, name).items()]
    for name in _GAUGES:
        document[name] = getattr(sample, name)
    return orjson.dumps(document)


def decode_sample(data: bytes) -> WorkerSample:
    """The sample :func:`encode_sample` wrote; raises ``ValueError`` (or ``KeyError``) if malformed."""
    document = orjson.loads(data)
    sample = WorkerSample(pid=int(document["pid"]), taken_at=float(document["taken_at"]))
    for name in (*_COUNTERS, *_HISTOGRAMS):
        setattr(sample, name, {tuple(labels): value for labels, value in document[name]})
    for name in _GAUGES:
        setattr(sample, name, document[name])
    sample.process = {str(k): float(v) for k, v in document.get("process", {}).items()}
    return sample


def process_values(collector: ProcessCollector) -> dict[str, float]:
    """This process's ``process_*`` values by family name (CPU seconds, memory, open files…)."""
    return {family.name: family.samples[0].value for family in collector.collect() if family.samples}


def _process_families(samples: list[WorkerSample]) -> Iterator[Family]:
    """The standard ``process_*`` metrics, one series per worker (labelled ``pid``)."""
    names = sorted({name for sample in samples for name in sample.process})
    for name in names:
        documentation = _PROCESS_DOCS.get(name, name)
        family: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(name, documentation, labels=["pid"])
            if name in _PROCESS_COUNTERS
            else GaugeMetricFamily(name, documentation, labels=["pid"])
        )
        for sample in samples:
            if name in sample.process:
                family.add_metric([str(sample.pid)], sample.process[name])
        yield family


_PROCESS_COUNTERS = frozenset({"process_cpu_seconds"})
_PROCESS_DOCS = {
    "process_cpu_seconds": "Total user and system CPU time spent in seconds.",
    "process_virtual_memory_bytes": "Virtual memory size in bytes.",
    "process_resident_memory_bytes": "Resident memory size in bytes.",
    "process_start_time_seconds": "Start time of the process since unix epoch in seconds.",
    "process_open_fds": "Number of open file descriptors.",
    "process_max_fds": "Maximum number of open file descriptors.",
}


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) is not a probe there; staleness decides
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WorkerMetricsGroup(Collector):
    """This worker's metrics plus its sibling workers' snapshot files, merged at scrape time."""

    def __init__(
        self,
        metrics: Metrics,
        directory: Path,
        *,
        interval_s: float = SNAPSHOT_INTERVAL_S,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        self._metrics = metrics
        self.directory = directory
        self._interval_s = interval_s
        self._stale_after_s = stale_after_s
        self._pid = os.getpid()
        self.path = directory / f"{self._pid}.json"
        self._process = ProcessCollector(registry=None)
        self._task: asyncio.Task[None] | None = None

    # --- this worker's snapshot --------------------------------------------------------------
    def live_sample(self) -> WorkerSample:
        sample = self._metrics.sample()
        sample.process = process_values(self._process)
        return sample

    def write_snapshot(self) -> None:
        """Replace this worker's file atomically (a reader never sees half a file)."""
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(encode_sample(self.live_sample()))
        os.replace(temporary, self.path)

    async def _keep_writing(self) -> None:
        while True:
            try:
                self.write_snapshot()
            except OSError as exc:  # a full or read-only disk must not stop the worker
                log.warning("could not write the metrics snapshot %s: %s", self.path, exc)
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        """Create the directory, clear leftovers of dead processes, start the snapshot task."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _remove_dead_groups(self.directory.parent, keep=self.directory)
        self.siblings()  # deletes the files of dead or stale workers
        self._task = asyncio.create_task(self._keep_writing(), name="aistats-metrics-snapshot")

    async def stop(self) -> None:
        """Stop writing and remove this worker's file: its numbers leave the merged totals."""
        if self._task is not None:
            await cancel_and_wait(self._task)
        with contextlib.suppress(OSError):
            self.path.unlink()

    # --- the other workers ---------------------------------------------------------------------
    def siblings(self) -> list[WorkerSample]:
        """The live sibling workers' latest samples; dead and stale files are deleted."""
        samples: list[WorkerSample] = []
        now = time.time()
        try:
            paths = list(self.directory.glob("*.json"))
        except OSError:
            return samples
        for path in paths:
            if path == self.path:
                continue
            try:
                sample = decode_sample(path.read_bytes())
            except FileNotFoundError:  # its worker just stopped
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring the unreadable metrics snapshot %s: %s", path, exc)
                continue
            if now - sample.taken_at > self._stale_after_s or not _alive(sample.pid):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            samples.append(sample)
        return samples

    # --- exposition ------------------------------------------------------------------------------
    def collect(self) -> Iterator[Family]:
        samples = [self.live_sample(), *sorted(self.siblings(), key=lambda sample: sample.pid)]
        yield from metric_families(samples)
        yield from _process_families(samples)


def _remove_dead_groups(root: Path, keep: Path) -> None:
    """Delete the snapshot folders of earlier ``serve`` runs (their supervisor pid is gone)."""
    try:
        folders = [path for path in root.iterdir() if path.is_dir() and path != keep]
    except OSError:
        return
    for folder in folders:
        if folder.name.isdigit() and _alive(int(folder.name)):
            continue
        for path in folder.glob("*"):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
