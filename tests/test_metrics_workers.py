"""Worker snapshot files: merging, and dropping dead, stale and unreadable ones (metrics_workers.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aistats_gateway.metrics import Metrics, WorkerSample
from aistats_gateway.metrics_workers import WorkerMetricsGroup, decode_sample, encode_sample
from aistats_gateway.store.records import GenerationRecord

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def _record(model: str, output_tokens: int, cost_nano: int, latency_ms: int) -> GenerationRecord:
    return GenerationRecord(
        id="gen_x",
        workspace_id="ws",
        key_id="kid",
        endpoint="chat",
        model=model,
        provider="p",
        upstream_model="m",
        status="completed",
        streamed=False,
        finish_reason="stop",
        input_tokens=10,
        cached_input_tokens=0,
        output_tokens=output_tokens,
        reasoning_tokens=0,
        cost_nano=cost_nano,
        latency_ms=latency_ms,
        ttft_ms=None,
        error=None,
        created_at=datetime.now(UTC),
        attempts=[],
    )


def _metrics(requests: int, cost_nano: int, latency_ms: int, in_flight: int = 0) -> Metrics:
    metrics = Metrics(writer_depth=lambda: 3, refused_records=lambda: 1)
    for _ in range(requests):
        metrics.response("chat", 200)
        metrics.generation(_record("a/model", 5, cost_nano, latency_ms), 0.01)
    metrics.in_flight = in_flight
    return metrics


def _scrape(group: WorkerMetricsGroup) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(group)
    samples: Samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def sibling_pid() -> Iterator[int]:
    """A live process standing in for another worker."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def _write(directory: Path, sample: WorkerSample) -> Path:
    path = directory / f"{sample.pid}.json"
    path.write_bytes(encode_sample(sample))
    return path


def test_a_sample_survives_its_file_format() -> None:
    sample = _metrics(3, 1_000_000_001, 120).sample()
    assert decode_sample(encode_sample(sample)) == sample


def test_counters_histograms_and_gauges_merge_over_workers(tmp_path: Path, sibling_pid: int) -> None:
    group = WorkerMetricsGroup(_metrics(2, 1_500_000_000, 30, in_flight=1), tmp_path)
    other = _metrics(3, 2_000_000_000, 700, in_flight=2).sample()
    other.pid = sibling_pid
    other.loop_lag_s = 0.25
    _write(tmp_path, other)

    samples = _scrape(group)
    assert samples["aistats_responses_total"][(("status", "200"), ("surface", "chat"))] == 5
    tokens = samples["aistats_tokens_total"][(("kind", "output"), ("model", "a/model"), ("provider", "p"))]
    assert tokens == 25
    cost = samples["aistats_cost_usd_total"][(("model", "a/model"), ("provider", "p"))]
    assert cost == pytest.approx(2 * 1.5 + 3 * 2.0)
    buckets = samples["aistats_request_duration_seconds_bucket"]
    surface = (("streamed", "false"), ("surface", "chat"))
    assert buckets[(("le", "0.05"), *surface)] == 2  # this worker's 30 ms requests
    assert buckets[(("le", "1.0"), *surface)] == 5  # and the sibling's 700 ms ones
    assert samples["aistats_request_duration_seconds_sum"][surface] == pytest.approx(2 * 0.03 + 3 * 0.7)
    assert samples["aistats_in_flight_requests"][()] == 3  # summed
    assert samples["aistats_writer_queue_depth"][()] == 6
    assert samples["aistats_writer_refused_records_total"][()] == 2  # one set aside by each worker
    lag = samples["aistats_event_loop_lag_seconds"]  # per worker
    assert lag[(("pid", str(sibling_pid)),)] == 0.25 and lag[(("pid", str(os.getpid())),)] == 0.0
    assert set(samples["aistats_worker_info"]) == {(("pid", str(os.getpid())),), (("pid", str(sibling_pid)),)}
    # the sibling wrote no process_* values; this worker's own are live
    assert set(samples["process_cpu_seconds_total"]) == {(("pid", str(os.getpid())),)}


def test_dead_stale_and_unreadable_snapshots_are_left_out(tmp_path: Path, sibling_pid: int) -> None:
    dead = _metrics(7, 0, 10).sample()
    dead.pid = _finished_pid()
    dead_path = _write(tmp_path, dead)
    stale = _metrics(11, 0, 10).sample()
    stale.pid = sibling_pid
    stale.taken_at = time.time() - 60
    stale_path = _write(tmp_path, stale)
    (tmp_path / "99999999.json").write_bytes(b"{not json")

    group = WorkerMetricsGroup(_metrics(1, 0, 10), tmp_path, stale_after_s=10)
    samples = _scrape(group)
    assert samples["aistats_responses_total"][(("status", "200"), ("surface", "chat"))] == 1
    assert list(samples["aistats_worker_info"]) == [(("pid", str(os.getpid())),)]
    assert not dead_path.exists() and not stale_path.exists(), "dead and stale files are cleaned"


def test_the_snapshot_task_writes_this_worker_and_removes_it_on_stop(tmp_path: Path) -> None:
    leftover = tmp_path / "metrics" / str(_finished_pid())  # an earlier `serve`, long gone
    leftover.mkdir(parents=True)
    (leftover / "123.json").write_bytes(b"{}")
    metrics = _metrics(4, 0, 10)
    group = WorkerMetricsGroup(metrics, tmp_path / "metrics" / "current", interval_s=0.05)

    async def run() -> WorkerSample:
        group.start()
        try:
            await asyncio.sleep(0.02)
            metrics.response("chat", 200)  # picked up by the next tick
            await asyncio.sleep(0.1)
            return decode_sample(group.path.read_bytes())
        finally:
            await group.stop()

    written = asyncio.run(run())
    assert written.pid == os.getpid() and written.responses == {("chat", "200"): 5}
    assert written.process["process_resident_memory_bytes"] > 0
    assert not group.path.exists()
    assert not leftover.exists(), "the folder of a dead supervisor is removed at start"


def _finished_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
