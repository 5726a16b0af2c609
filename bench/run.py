"""The benchmark: direct, nginx, LiteLLM and the gateway against one nginx mock, in one session.

    .venv/bin/python bench/run.py                  # the full matrix, writes docs/performance.md
    .venv/bin/python bench/run.py --quick          # regression check against bench/baseline.json
    .venv/bin/python bench/run.py --save-baseline  # full matrix, and write bench/baseline.json

``make bench`` and ``make bench-quick`` install what is missing first (bench/setup.sh). Everything
listens on 127.0.0.1; every load run is bounded in time; every process started here is stopped
at the end, also on failure. Raw results go to bench/results/run-<time>/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import httpx

import report
import targets as tg
from database import PostgresForBench
from procs import (
    Proc,
    ProcessSet,
    StartError,
    core_busy_seconds,
    cpu_seconds,
    free_port,
    rss_bytes,
    wait_quiet,
)
from results import FAILED, OK, UNAVAILABLE, Cell, ProbeResult, SoakSample, TargetInfo, median_cell
from scenarios import PROBE_SCENARIO, Expected, Scenario, full_matrix, load_expected, quick_matrix
from validate import Invalid, validate
from wrkrun import WrkError, WrkResult, run_wrk

# The database URL for a gateway target by name (None: its own SQLite file).
DatabaseFor = Callable[[str], str | None]

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BASELINE = BENCH_DIR / "baseline.json"
PERFORMANCE_MD = ROOT / "docs" / "performance.md"
# CPU µs per request is noisy (timer ticks, frequency, neighbours): only a clear regression fails.
REGRESSION_THRESHOLD = 0.25
BASELINE_CELLS = ("chat-c64", "chat-stream-c16")
MB = 1024 * 1024
ALL_TARGETS = ("direct", "nginx", "litellm", "gateway")
# Not in make bench: the gateway with OpenTelemetry traces on (--targets gateway,gateway-otel).
OTEL_TARGET = "gateway-otel"
NOISY_PCT = 10.0  # flag a cell when other processes took this much of the target's core


def machine_busy() -> float:
    """CPU seconds both cores spent running processes, anyone's."""
    return core_busy_seconds(tg.TARGET_CORE) + core_busy_seconds(tg.LOAD_CORE)


def bench_cpu(mock_pid: int) -> float:
    """CPU seconds of the bench's own load side: the mock, finished wrk runs and this process."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime
    return cpu_seconds(mock_pid) + waited


def log(message: str) -> None:
    print(message, flush=True)


# --- one timed cell ---------------------------------------------------------------------------


def time_cell(
    target: tg.Target,
    scenario: Scenario,
    body_file: Path,
    *,
    duration: float,
    warmup: float,
    out_dir: Path,
    mock_pid: int,
    settle: bool = True,
    neighbours: Sequence[int] = (),
) -> Cell:
    """Warm up, then one wrk run with the target's CPU measured around it.

    With ``settle`` the CPU is read once the target is quiet again, so work it deferred past the
    load (a backlog of usage records) counts too. ``neighbours`` (the other targets sharing its
    core) must be quiet before the run starts. CPU used meanwhile by anything but the target, the
    mock, wrk and this process is recorded as ``others_pct``: how noisy the machine was.
    """
    assert target.proc is not None
    url = target.url(scenario)

    def load(seconds: float) -> tuple[WrkResult, str]:
        return run_wrk(url, body_file=body_file, key=target.key, connections=scenario.connections,
                       duration=seconds, core=tg.LOAD_CORE)  # fmt: skip

    try:
        if warmup > 0:
            load(warmup)
            wait_quiet(target.proc.pid)  # the warm-up's last requests must not count
        for neighbour in neighbours:
            wait_quiet(neighbour, limit=30.0)  # nothing left over from the previous cell
        cpu_before = cpu_seconds(target.proc.pid)
        ours_before, busy_before, clock_before = bench_cpu(mock_pid), machine_busy(), time.monotonic()
        result, raw = load(duration)
        busy_after = wait_quiet(target.proc.pid) if settle else 0.0
        cpu_after = cpu_seconds(target.proc.pid)
        ours_after, busy_after_all, clock_after = bench_cpu(mock_pid), machine_busy(), time.monotonic()
    except (WrkError, subprocess.TimeoutExpired) as exc:
        return Cell(scenario.key, target.name, status=FAILED, note=f"wrk: {exc}")
    (out_dir / f"{scenario.key}.{target.name}.wrk.txt").write_text(raw)
    cell = Cell(scenario.key, target.name, requests=result.requests, errors=result.errors, rps=result.rps,
                p50_ms=result.p50_ms, p99_ms=result.p99_ms)  # fmt: skip
    cell.rss_mb = rss_bytes(target.proc.pid) / MB
    cell.busy_after_s = busy_after
    target_cpu = 0.0 if target.proc.pid == mock_pid else cpu_after - cpu_before
    others = (busy_after_all - busy_before) - (ours_after - ours_before) - target_cpu
    cell.others_pct = max(0.0, others / (clock_after - clock_before) * 100)
    notes = []
    if busy_after >= 1.0:
        notes.append(f"busy {busy_after:.0f} s after the load (deferred work, counted in CPU)")
    if cell.others_pct >= NOISY_PCT:
        notes.append(f"noisy: other processes used {cell.others_pct:.0f}% of a core")
    cell.note = "; ".join(notes)
    if result.requests:
        # wrk keeps one request in flight per connection; when it stops, the target still works
        # on those, and that CPU is measured too, so they count as served.
        cell.cpu_us = (cpu_after - cpu_before) / (result.requests + scenario.connections) * 1e6
    if result.errors:
        cell.status = FAILED
        cell.note = (
            f"{result.errors} of {result.requests} failed under load "
            f"(non-2xx {result.non_2xx}, socket {result.socket_errors}, timeouts {result.timeouts})"
        )
    if not target.proc.alive():
        cell.status, cell.note = FAILED, "the process died"
    return cell


def _log_cell(scenario: Scenario, cell: Cell) -> None:
    trouble = (
        f"  {cell.status}: {cell.note}" if cell.status != OK else (f"  ({cell.note})" if cell.note else "")
    )
    log(f"  {scenario.name:<36} {cell.target:<8} {cell.rps:>9,.0f} req/s  p50 {cell.p50_ms:7.2f} ms  "
        f"p99 {cell.p99_ms:7.2f} ms  CPU {cell.cpu_us:>8,.0f} µs  RSS {cell.rss_mb:5.0f} MB"
        f"{trouble}")  # fmt: skip


def _untimed(client: httpx.Client, target: tg.Target, scenario: Scenario, expected: Expected) -> Cell | None:
    """Why ``target`` cannot be timed in ``scenario`` (unavailable, dead, wrong answer), or None."""
    key = (scenario.key, target.name)
    if target.unavailable:
        return Cell(*key, status=UNAVAILABLE, note=target.unavailable)
    if target.proc is not None and not target.proc.alive():
        return Cell(*key, status=FAILED, note=f"the process exited ({target.proc.popen.returncode})")
    try:
        validate(client, target.url(scenario), scenario, expected, key=target.key, billed=target.billed)
    except Invalid as exc:
        log(f"  {scenario.name:<36} {target.name:<8} FAILED validation: {exc}")
        return Cell(*key, status=FAILED, note=f"wrong answer: {exc}")
    return None


def _neighbours(targets: Sequence[tg.Target], target: tg.Target) -> list[int]:
    """The other targets on the target core (everything but direct, which is the mock)."""
    return [t.proc.pid for t in targets if t is not target and t.proc is not None and t.name != "direct"]


# The cells closest to their goals on a noisy VM (a slow minute moves them past it) are timed at
# least this many rounds (medians), whatever --rounds says; so is the scale-out step.
GOAL_CELLS = frozenset({"chat-c1", "responses-c1"})
GOAL_CELL_ROUNDS = 3


def rounds_for(scenario_key: str, rounds: int) -> int:
    """How many rounds a scenario gets: ``rounds``, or at least GOAL_CELL_ROUNDS for a goal cell."""
    return max(rounds, GOAL_CELL_ROUNDS) if scenario_key in GOAL_CELLS else rounds


def run_matrix(
    targets: Sequence[tg.Target],
    matrix: Sequence[Scenario],
    expected: Expected,
    *,
    rounds: int,
    duration: float,
    warmup: float,
    run_dir: Path,
    mock_pid: int,
) -> dict[tuple[str, str], Cell]:
    """Every scenario, targets round-robin inside it; validation first, medians over rounds."""
    (run_dir / "bodies").mkdir(parents=True, exist_ok=True)
    (run_dir / "wrk").mkdir(exist_ok=True)
    runs: dict[tuple[str, str], list[Cell]] = {}
    untimed: dict[tuple[str, str], Cell] = {}
    with httpx.Client(timeout=30.0) as client:
        for round_index in range(max((rounds_for(s.key, rounds) for s in matrix), default=0)):
            for scenario in matrix:
                if round_index >= rounds_for(scenario.key, rounds):
                    continue
                body_file = run_dir / "bodies" / f"{scenario.key}.json"
                body_file.write_bytes(scenario.body())
                for target in targets:
                    key = (scenario.key, target.name)
                    if key in untimed:
                        continue
                    if round_index == 0 and (reason := _untimed(client, target, scenario, expected)):
                        untimed[key] = reason
                        continue
                    cell = time_cell(target, scenario, body_file, duration=duration, warmup=warmup,
                                     out_dir=run_dir / "wrk", mock_pid=mock_pid,
                                     neighbours=_neighbours(targets, target))  # fmt: skip
                    runs.setdefault(key, []).append(cell)
                    _log_cell(scenario, cell)
    merged = {key: median_cell(cells) for key, cells in runs.items()}
    merged.update(untimed)
    return merged


# --- the 500-stream probe -----------------------------------------------------------------------


def run_probe(target: tg.Target, streams: int, run_dir: Path, neighbours: Sequence[int]) -> ProbeResult:
    """The stream probe (on the load core) against one target, with the target's CPU around it."""
    if target.unavailable or target.proc is None:
        return ProbeResult(target.name, status=UNAVAILABLE, note=target.unavailable or "")
    probe = [sys.executable, str(BENCH_DIR / "stream_probe.py"), "--url", target.url(PROBE_SCENARIO),
             "--streams", str(streams), "--timeout", "60"]  # fmt: skip
    if target.key:
        probe += ["--key", target.key]
    if target.billed:
        probe.append("--billed")
    for pid in [target.proc.pid, *neighbours]:
        wait_quiet(pid, limit=30.0)
    cpu_before = cpu_seconds(target.proc.pid)
    done = subprocess.run(["taskset", "-c", str(tg.LOAD_CORE), *probe], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    wait_quiet(target.proc.pid)
    cpu_after = cpu_seconds(target.proc.pid)
    (run_dir / f"probe.{target.name}.json").write_text(done.stdout + done.stderr)
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return ProbeResult(target.name, status=FAILED, note=f"probe crashed: {done.stderr.strip()[-300:]}")
    result = ProbeResult(target.name, report=data, rss_mb=rss_bytes(target.proc.pid) / MB)
    if data.get("ok"):
        result.cpu_us_per_stream = (cpu_after - cpu_before) / int(data["streams"]) * 1e6
    if data.get("ok") != data.get("streams"):
        result.status = FAILED
        result.note = f"{data.get('failed')} failed, {data.get('wrong')} wrong: {data.get('first_error')}"
    return result


# --- the scale-out step ------------------------------------------------------------------------

SCALE_SCENARIO = Scenario("chat", stream=False, slow=False, connections=64)
SCALE_WORKERS = report.SCALE_WORKERS


def run_scaling(
    procs: ProcessSet,
    one_worker: tg.Target,
    expected: Expected,
    *,
    run_dir: Path,
    mock_port: int,
    mock_pid: int,
    rounds: int,
    duration: float,
    warmup: float,
    database: DatabaseFor,
) -> list[Cell]:
    """Chat at 64 connections: ``--workers 2`` on both cores against one worker on the same two
    cores (the control), and the one worker of the matrix alone on core 0.

    The load (wrk, the mock) shares core 1 with the second worker, so req/s cannot double on
    this machine; what shows a shared bottleneck is the CPU per request (and so req/s per busy
    core) growing with the workers. Sharing cores with the load costs CPU per request by itself
    on some machines, so the goal compares against one worker on those same cores. All three
    are timed interleaved, each in its own folder.
    """
    gateway_bin = Path(sys.executable).parent / "aistats-gateway"
    cores = f"{tg.TARGET_CORE},{tg.LOAD_CORE}"
    started: list[tg.Target] = []
    cells: list[Cell] = []
    try:
        for workers in (1, SCALE_WORKERS):
            name = f"gateway-w{workers}"
            log(f"  scale-out: {name} on cores {cores}")
            try:
                target = tg.start_gateway(
                    procs, run_dir, free_port(), mock_port, gateway_bin,
                    name=name, workers=workers, cores=cores, database_url=database(name),
                )  # fmt: skip
            except StartError as exc:
                cells.append(Cell(SCALE_SCENARIO.key, name, status=FAILED, note=f"did not start: {exc}"))
                continue
            started.append(target)
        matrix = run_matrix(
            [one_worker, *started], [SCALE_SCENARIO], expected,
            rounds=max(rounds, GOAL_CELL_ROUNDS), duration=duration, warmup=warmup,
            run_dir=run_dir / "scaling", mock_pid=mock_pid,
        )  # fmt: skip
    finally:
        for running in started:
            if running.proc is not None:
                procs.stop(running.proc)
    return cells + list(matrix.values())


# --- the RSS soak ---------------------------------------------------------------------------------


def run_soak(target: tg.Target, seconds: float, run_dir: Path, mock_pid: int) -> list[SoakSample]:
    """Chat at 64 connections for ``seconds``, in 30 s slices, with RSS after each slice."""
    assert target.proc is not None
    scenario = Scenario("chat", stream=False, slow=False, connections=64)
    body_file = run_dir / "bodies" / "soak.json"
    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_bytes(scenario.body())
    samples = [SoakSample(0.0, rss_bytes(target.proc.pid) / MB)]
    started = time.monotonic()
    index = 0
    while (left := seconds - (time.monotonic() - started)) >= 1:
        out_dir = run_dir / "soak" / f"{index:03d}"
        out_dir.mkdir(parents=True, exist_ok=True)
        cell = time_cell(target, scenario, body_file, duration=min(30.0, left), warmup=0, out_dir=out_dir,
                         mock_pid=mock_pid, settle=False)  # fmt: skip
        sample = SoakSample(time.monotonic() - started, cell.rss_mb, cell.rps, cell.cpu_us, cell.errors)
        samples.append(sample)
        log(f"  soak {sample.seconds:5.0f} s  RSS {sample.rss_mb:5.1f} MB  {sample.rps:7,.0f} req/s  "
            f"CPU {sample.cpu_us:5.0f} µs  errors {sample.errors}")  # fmt: skip
        if cell.status != OK:
            log(f"  soak stopped: {cell.note}")
            break
        index += 1
    return samples


# --- idle state, machine, versions ----------------------------------------------------------------


def measure_idle(targets: Sequence[tg.Target], seconds: float) -> None:
    """Idle RSS and the CPU the targets burn with no traffic (timers, background tasks)."""
    live = [t for t in targets if t.proc is not None and not t.unavailable]
    before = {t.name: cpu_seconds(t.proc.pid) for t in live if t.proc}
    time.sleep(seconds)
    for target in live:
        assert target.proc is not None
        target.idle_cpu_pct = (cpu_seconds(target.proc.pid) - before[target.name]) / seconds * 100
        target.idle_rss = rss_bytes(target.proc.pid)


def _first_line(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def machine_and_versions(litellm_available: bool) -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    litellm = "not available"
    if litellm_available:
        litellm = _first_line(
            [
                str(tg.LITELLM_BIN.parent / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ]
        )
    gateway = _first_line(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('aistats-gateway'))"]
    )
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    nginx = re.sub(r"^.*nginx/", "", _first_line(["nginx", "-v"]))
    wrk = _first_line(["wrk", "-v"]).split(" [")[0].removeprefix("wrk ")
    changed = ", uncommitted changes" if dirty not in ("", "unknown") else ""
    return {
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "litellm": litellm,
        "gateway": f"{gateway} (commit {commit}{changed})",
        "nginx": nginx,
        "wrk": wrk,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# Sections measured by hand go below this line in docs/performance.md; a run keeps them.
HAND_MARKER = "<!-- measured by hand: everything below is kept by make bench -->"


def kept_by_hand(path: Path) -> str:
    """The hand-written tail of ``path`` (from :data:`HAND_MARKER` on), or ""."""
    text = path.read_text() if path.exists() else ""
    index = text.find(HAND_MARKER)
    return "\n" + text[index:] if index >= 0 else ""


# --- baseline -------------------------------------------------------------------------------------


def save_baseline(cells: dict[tuple[str, str], Cell], meta: dict[str, str]) -> None:
    values = {}
    for scenario in BASELINE_CELLS:
        cell = cells.get((scenario, "gateway"))
        if cell is None or cell.status != OK:
            log(f"baseline not written: gateway {scenario} has no result")
            return
        values[scenario] = round(cell.cpu_us, 1)
    payload = {
        "what": "gateway CPU µs per request (chat-c64) and per stream (chat-stream-c16); see bench/README.md",
        "date": meta["date"],
        "machine": f"{meta['cpu']}, {meta['nproc']} cores",
        "gateway": meta["gateway"],
        "cpu_us": values,
    }
    BASELINE.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {BASELINE.relative_to(ROOT)}")


def check_baseline(cells: dict[tuple[str, str], Cell], threshold: float) -> bool:
    """Compare the gateway's CPU per request with bench/baseline.json; False on a regression."""
    if not BASELINE.exists():
        log(f"no {BASELINE.relative_to(ROOT)}: run `make bench` (or bench/run.py --save-baseline) first")
        return False
    baseline = json.loads(BASELINE.read_text())["cpu_us"]
    ok = True
    log("")
    log(f"| gateway CPU µs | baseline | now | change | limit +{threshold:.0%} |")
    log("|---|---:|---:|---:|---|")
    for scenario in BASELINE_CELLS:
        cell = cells.get((scenario, "gateway"))
        base = float(baseline.get(scenario, math.nan))
        if cell is None or cell.status != OK:
            log(f"| {scenario} | {base:,.0f} | {cell.status if cell else 'missing'} | | FAIL |")
            ok = False
            continue
        change = cell.cpu_us / base - 1
        good = change <= threshold
        ok = ok and good
        verdict = "ok" if good else "REGRESSED"
        log(f"| {scenario} | {base:,.0f} | {cell.cpu_us:,.0f} | {change:+.0%} | {verdict} |")
    return ok


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="gateway vs LiteLLM vs nginx vs direct, one session")
    parser.add_argument("--quick", action="store_true", help="regression check: gateway + direct, 2 cells")
    parser.add_argument("--duration", type=float, help="seconds of wrk per cell (default 10, quick 6)")
    parser.add_argument("--warmup", type=float, help="seconds of untimed load before each cell (default 1)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the matrix, report medians")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma-separated subset")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenario keys (e.g. chat-c64; scaling: the --workers step)",
    )
    parser.add_argument("--streams", type=int, default=500, help="streams of the probe (0: no probe)")
    parser.add_argument("--save-baseline", action="store_true", help="write bench/baseline.json")
    parser.add_argument("--threshold", type=float, default=REGRESSION_THRESHOLD)
    parser.add_argument("--soak", type=float, default=0, help="then load the gateway this many seconds, RSS")
    parser.add_argument(
        "--soak-from",
        type=Path,
        help="report an earlier run's soak (its results.json) with this one, e.g. in docs/performance.md",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="what the gateways store in: a fresh SQLite file each (default), or a fresh database each "
        "on the machine's Postgres, pinned to the load core for the run (bench/database.py)",
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip the --workers scale-out step")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/performance.md")
    parser.add_argument("--keep-data", action="store_true", help="keep the gateway's database of the run")
    parser.add_argument("--command", default="", help="how this run was invoked, for the report")
    parser.add_argument(
        "--base",
        type=Path,
        help="also time target 'base': the gateway run from this src dir (e.g. a git worktree of an "
        "older commit, /tmp/base/src), interleaved with 'gateway' in the same session",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.targets = "direct,gateway"
        args.streams = 0
    if args.quick or (args.only and "scaling" not in args.only.split(",")):
        args.no_scaling = True
    if args.base is not None:
        if not (args.base / "aistats_gateway").is_dir():
            parser.error(f"--base {args.base}: no aistats_gateway package there (give a checkout's src)")
        args.targets += ",base"
    # docs/performance.md is the full matrix with every target on SQLite; a partial run does not
    # replace it, and bench/baseline.json is SQLite's.
    full = not (args.quick or args.only or args.base) and set(args.targets.split(",")) == set(ALL_TARGETS)
    if not full or args.database != "sqlite":
        args.no_docs = True
    if args.save_baseline and args.database != "sqlite":
        parser.error("--save-baseline: bench/baseline.json is measured on SQLite")
    args.duration = args.duration or (6.0 if args.quick else 10.0)
    args.warmup = 1.0 if args.warmup is None else args.warmup
    return args


def _span_exports(run_dir: Path) -> int:
    """POSTs the mock took on its OTLP traces sink (one line each in its access log)."""
    log_file = run_dir / "mock" / "traces.log"
    return len(log_file.read_bytes().splitlines()) if log_file.exists() else 0


def start_targets(
    procs: ProcessSet,
    names: Sequence[str],
    run_dir: Path,
    mock_port: int,
    mock: Proc,
    base: Path | None = None,
    database: DatabaseFor = lambda _: None,
) -> list[tg.Target]:
    gateway_bin = Path(sys.executable).parent / "aistats-gateway"
    started: list[tg.Target] = []
    for name in names:
        log(f"starting {name}")
        if name == "direct":
            started.append(tg.direct_target(mock, mock_port))
        elif name == "nginx":
            started.append(tg.start_nginx_proxy(procs, run_dir, free_port(), mock_port))
        elif name == "litellm":
            target = tg.start_litellm(procs, run_dir, free_port(), mock_port)
            if target.unavailable:
                log(f"  LiteLLM {target.unavailable}")
            started.append(target)
        elif name == "gateway":
            port, url = free_port(), database(name)
            started.append(tg.start_gateway(procs, run_dir, port, mock_port, gateway_bin, database_url=url))
        elif name == OTEL_TARGET:  # traces on, every request sampled, spans exported to the mock
            traces = {"AISTATS_OTEL_ENDPOINT": f"http://127.0.0.1:{mock_port}/v1/traces"}
            started.append(tg.start_gateway(procs, run_dir, free_port(), mock_port, gateway_bin, name=name,
                                            database_url=database(name), extra_env=traces))  # fmt: skip
        elif name == "base" and base is not None:
            port = free_port()
            target = tg.start_gateway(procs, run_dir, port, mock_port, gateway_bin, name="base", source=base,
                                      database_url=database(name))  # fmt: skip
            started.append(target)
        else:
            raise SystemExit(f"unknown target {name!r}")
    return started


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The orchestrator sits on the load core, away from the targets.
    os.sched_setaffinity(0, {tg.LOAD_CORE})
    expected = load_expected()
    matrix = quick_matrix() if args.quick else full_matrix()
    if args.only:
        wanted = set(args.only.split(","))
        matrix = [s for s in matrix if s.key in wanted]
    names = [n for n in args.targets.split(",") if n]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = BENCH_DIR / "results" / f"run-{stamp}{'-quick' if args.quick else ''}"
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = machine_and_versions("litellm" in names and tg.LITELLM_BIN.exists())
    started_at = time.monotonic()
    log(
        f"bench: {len(matrix)} scenarios x {names}, {args.duration:g} s per cell; raw results in "
        f"{run_dir.relative_to(ROOT)}"
    )

    probes: list[ProbeResult] = []
    soak: list[SoakSample] = []
    scaling: list[Cell] = []
    with contextlib.ExitStack() as stack:  # the databases outlive the processes that use them
        database: DatabaseFor = lambda _: None  # noqa: E731
        meta["database"] = "a fresh SQLite file per gateway"
        if args.database == "postgres":
            postgres = stack.enter_context(PostgresForBench(tg.LOAD_CORE))
            database = postgres.database_url
            meta["database"] = f"a fresh database per gateway; {postgres.note}"
            log(f"bench: {postgres.note}")
        procs = stack.enter_context(ProcessSet())
        try:
            mock_port = free_port()
            mock = tg.start_mock(procs, run_dir, mock_port)
            targets = start_targets(procs, names, run_dir, mock_port, mock, args.base, database)
        except StartError as exc:
            log(f"bench: {exc}")
            return 2
        measure_idle(targets, 3.0)
        cells = run_matrix(
            targets,
            matrix,
            expected,
            rounds=args.rounds,
            duration=args.duration,
            warmup=args.warmup,
            run_dir=run_dir,
            mock_pid=mock.pid,
        )
        if args.streams:
            for target in targets:
                if target.name in ("direct", "nginx", "gateway"):
                    log(f"  probe: {args.streams} paced streams → {target.name}")
                    probes.append(run_probe(target, args.streams, run_dir, _neighbours(targets, target)))
        gateway = next((t for t in targets if t.name == "gateway" and t.proc is not None), None)
        if not args.no_scaling and gateway is not None:
            scaling = run_scaling(procs, gateway, expected, run_dir=run_dir, mock_port=mock_port,
                                  mock_pid=mock.pid, rounds=args.rounds, duration=args.duration,
                                  warmup=args.warmup, database=database)  # fmt: skip
        if args.soak and gateway is not None:
            log(f"  soak: chat at 64 connections → gateway for {args.soak:g} s")
            soak = run_soak(gateway, args.soak, run_dir, mock.pid)
        infos = []
        for target in targets:
            info = TargetInfo(target.name, idle_rss_mb=target.idle_rss / MB, idle_cpu_pct=target.idle_cpu_pct)
            if target.unavailable:
                info.status, info.note = UNAVAILABLE, target.unavailable
            elif target.proc is not None and not target.proc.alive():
                info.status, info.note = FAILED, f"exited during the run ({target.proc.popen.returncode})"
            elif target.proc is not None:
                info.end_rss_mb = rss_bytes(target.proc.pid) / MB
            if target.name == OTEL_TARGET and info.status == OK:
                exports = _span_exports(run_dir)
                info.note = f"{exports} OTLP exports reached the mock"
                if not exports:
                    info.status = FAILED
            infos.append(info)

    if not args.keep_data:  # hundreds of MB of usage records after a long run
        for name in ("gateway", OTEL_TARGET, "base"):
            for path in (run_dir / name / "data").glob("gateway.db*"):
                path.unlink()
    tables = [report.scenario_table(s, [c for (k, _), c in cells.items() if k == s.key]) for s in matrix]
    goals = report.goals(cells, probes, infos)
    probe_md = report.probe_table(probes, args.streams) if probes else None
    if not soak and args.soak_from is not None:
        earlier = json.loads(args.soak_from.read_text())
        soak = [SoakSample(**sample) for sample in earlier["soak"]]
        when, version = earlier["meta"]["date"], earlier["meta"]["gateway"]
        meta["soak_from"] = f"{when}, gateway {version} ({args.soak_from.parent.name})"
    if scaling:
        goals.append(report.scaling_goal(scaling))
    if soak:
        goals.append(report.soak_goal(soak))
    meta.update(
        command=args.command or "bench/run.py",
        argv=shlex.join(["bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        duration=f"{args.duration:g}",
        warmup=f"{args.warmup:g}",
        rounds=str(args.rounds),
        goal_rounds=str(max(args.rounds, GOAL_CELL_ROUNDS)),
    )
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "cells": [asdict(c) for c in cells.values()],
                "probes": [asdict(p) for p in probes],
                "targets": [asdict(i) for i in infos],
                "soak": [asdict(s) for s in soak],
                "scaling": [asdict(c) for c in scaling],
            },
            indent=2,
            default=str,
        )
    )
    log("")
    for table in tables:
        log(table + "\n")
    if probe_md:
        log(probe_md + "\n")
    log(report.targets_table(infos) + "\n")
    if scaling:
        log(report.scaling_table(scaling) + "\n")
    if soak:
        log(report.soak_table(soak) + "\n")
    log(report.goals_table(goals))
    log(f"\nbench: done in {time.monotonic() - started_at:.0f} s")

    if not args.no_docs:
        document = report.markdown(
            meta,
            tables,
            report.goals_table(goals),
            report.targets_table(infos),
            probe_md,
            report.soak_table(soak) if soak else None,
            report.scaling_table(scaling) if scaling else None,
        )
        PERFORMANCE_MD.parent.mkdir(exist_ok=True)
        document += kept_by_hand(PERFORMANCE_MD)
        PERFORMANCE_MD.write_text(document)
        (run_dir / "performance.md").write_text(document)
        log(f"wrote {PERFORMANCE_MD.relative_to(ROOT)}")
    if args.save_baseline:
        save_baseline(cells, meta)
    if args.quick:
        return 0 if check_baseline(cells, args.threshold) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
