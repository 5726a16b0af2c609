"""The bench's measurements as plain data, and their medians over rounds."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

OK = "ok"
FAILED = "FAILED"
UNAVAILABLE = "not available"

NAN = float("nan")


def one_line(text: str, limit: int = 240) -> str:
    """``text`` fit for a markdown table cell: one line, no pipes, at most ``limit`` characters."""
    flat = " ".join(text.replace("|", "/").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass
class Cell:
    """One target in one scenario: a timed wrk run, or why there is none."""

    scenario: str  # Scenario.key
    target: str
    status: str = OK  # OK, FAILED (wrong answer or errors under load) or UNAVAILABLE
    note: str = ""
    requests: int = 0
    errors: int = 0
    rps: float = NAN
    p50_ms: float = NAN
    p99_ms: float = NAN
    cpu_us: float = NAN  # CPU of the target's process tree per completed request
    rss_mb: float = NAN  # after the run
    busy_after_s: float = 0.0  # how long the target kept working after the load stopped
    others_pct: float = NAN  # share of the target's core used by other processes during the run


def median_cell(rounds: list[Cell]) -> Cell:
    """The per-field median of one cell's rounds (the first failure wins)."""
    for cell in rounds:
        if cell.status != OK:
            return cell
    first = rounds[0]

    def med(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return statistics.median(finite) if finite else NAN

    return Cell(
        scenario=first.scenario,
        target=first.target,
        note=first.note,
        requests=round(statistics.median(c.requests for c in rounds)),
        errors=sum(c.errors for c in rounds),
        rps=med([c.rps for c in rounds]),
        p50_ms=med([c.p50_ms for c in rounds]),
        p99_ms=med([c.p99_ms for c in rounds]),
        cpu_us=med([c.cpu_us for c in rounds]),
        rss_mb=med([c.rss_mb for c in rounds]),
        busy_after_s=max(c.busy_after_s for c in rounds),
        others_pct=med([c.others_pct for c in rounds]),
    )


@dataclass
class ProbeResult:
    """The 500-stream probe against one target."""

    target: str
    status: str = OK
    note: str = ""
    report: dict[str, float | int | str | None] = field(default_factory=dict)
    cpu_us_per_stream: float = NAN
    rss_mb: float = NAN


@dataclass
class TargetInfo:
    """A target's state outside the timed runs."""

    name: str
    status: str = OK
    note: str = ""
    idle_rss_mb: float = NAN
    idle_cpu_pct: float = NAN
    end_rss_mb: float = NAN


@dataclass
class SoakSample:
    """The gateway's memory after ``seconds`` of the soak, and that slice's throughput."""

    seconds: float
    rss_mb: float
    rps: float = NAN
    cpu_us: float = NAN
    errors: int = 0
