"""Run wrk with the POST script and read its report."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post.lua"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    timeouts: int

    @property
    def errors(self) -> int:
        """Requests that did not end in a 2xx answer (wrong status, broken or timed-out socket)."""
        return self.non_2xx + self.socket_errors + self.timeouts


class WrkError(RuntimeError):
    """wrk failed, or printed something this parser does not understand."""


def parse_wrk(output: str) -> WrkResult:
    """Read requests, req/s, p50/p99 and error counts from ``wrk --latency`` output."""
    total = _TOTAL.search(output)
    rate = _RATE.search(output)
    percentiles = {int(p): float(v) * _UNITS_MS[u] for p, v, u in _PERCENTILE.findall(output)}
    if total is None or rate is None or set(percentiles) != {50, 99}:
        raise WrkError(f"cannot read wrk's report:\n{output}")
    non_2xx = _NON_2XX.search(output)
    sockets = _SOCKET.search(output)
    connect = read = write = timeouts = 0
    if sockets:
        connect, read, write, timeouts = (int(group) for group in sockets.groups())
    return WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS_MS[total.group(3)] / 1000,
        rps=float(rate.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=connect + read + write,
        timeouts=timeouts,
    )


def run_wrk(
    url: str,
    *,
    body_file: Path,
    key: str | None,
    connections: int,
    duration: float,
    core: int,
    timeout: float = 10.0,
) -> tuple[WrkResult, str]:
    """One bounded wrk run (one thread, ``connections`` keep-alive connections) pinned to ``core``."""
    seconds = max(1, round(duration))  # wrk takes whole seconds
    command = [
        "taskset",
        "-c",
        str(core),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout:g}s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_AUTH": key or ""}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + timeout + 30, check=False
    )
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout), done.stdout
