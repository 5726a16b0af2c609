"""Render the bench's results: a table per scenario, the probe, the goals, docs/performance.md."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from results import OK, Cell, ProbeResult, SoakSample, TargetInfo, one_line
from scenarios import Scenario

TARGET_ORDER = ("direct", "nginx", "litellm", "gateway", "gateway-otel", "base")

HOW_TO_READ = """\
**How to read.** Every target is pinned to core 0 (`taskset -c 0`); the nginx mock, wrk and the
stream probe share core 1. *direct* is wrk straight to the mock: the floor, and its CPU column is
the mock's own cost. *nginx* is a bare reverse proxy, *litellm* is LiteLLM's proxy without a
database or callbacks (master key auth), *gateway* is this project on a paid model, so every
request is authenticated, reserved, settled, written to the ledger and recorded. Before a target
is timed in a scenario it must answer one request right (status, the canned text, the canned
usage, a proper end of stream, and for the gateway the exact `usage.cost`); a target that does
not is FAILED and not timed, and any non-2xx or socket error during the timed run marks it FAILED
too. *req/s*, *p50* and *p99* come from `wrk --latency` (one thread, keep-alive connections); at
64 connections req/s is bounded by the target's single core, at 1 connection by its latency.
*CPU µs/req* is the growth of user+system time of the target's whole process tree
(`/proc/<pid>/stat`) from the start of the run until the target is quiet again, divided by the
requests completed plus the one per connection still in flight when wrk stops. So work deferred
past the load (a backlog of usage records to write) counts; "busy N s after the load" in the note
says how long that took. It includes the target's idle timers (the gateway's 0.5 s refresh) but
nothing from wrk or the mock; for streams it is per whole stream. *RSS* is VmRSS of the process
tree after the run. *+p99 vs direct* is what the target adds to the mock's own p99 at the same
connection count. The "mock +20 ms" scenarios answer after 20 ms, like a fast provider: there
the proxies' latency is hidden by the upstream and CPU per request is what matters. A note
"noisy: other processes used N% of a core" flags a run during which something besides the bench
(a test suite, another benchmark) ran on this 2-core machine: its latency and req/s are
pessimistic, its CPU per request much less so. Numbers move a few percent between runs; compare targets within
one run, not across machines."""


@dataclass(frozen=True)
class Goal:
    """One target of the performance issue and what this run measured for it."""

    goal: str
    measured: str
    verdict: str  # "pass", "FAIL" or "n/a"


def _num(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _cpu(value: float) -> str:
    if math.isnan(value):
        return "-"
    return _num(value, 1 if value < 100 else 0)


def _ms(value: float) -> str:
    return _num(value, 2 if not math.isnan(value) and value < 100 else 1)


def _ordered(cells: Sequence[Cell]) -> list[Cell]:
    return sorted(cells, key=lambda c: TARGET_ORDER.index(c.target) if c.target in TARGET_ORDER else 99)


def scenario_table(scenario: Scenario, cells: Sequence[Cell]) -> str:
    """A markdown table for one scenario, and the gateway vs LiteLLM CPU ratio under it."""
    per = "stream" if scenario.stream else "req"
    direct = next((c for c in cells if c.target == "direct" and c.status == OK), None)
    lines = [
        f"### {scenario.name}",
        "",
        f"| target | req/s | p50 ms | p99 ms | +p99 ms vs direct | CPU µs/{per} | RSS MB | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for cell in _ordered(cells):
        if cell.status != OK:
            lines.append(f"| {cell.target} | {cell.status} | | | | | | {one_line(cell.note)} |")
            continue
        added = cell.p99_ms - direct.p99_ms if direct is not None and cell.target != "direct" else math.nan
        lines.append(
            f"| {cell.target} | {_num(cell.rps)} | {_ms(cell.p50_ms)} | {_ms(cell.p99_ms)} | {_ms(added)} "
            f"| {_cpu(cell.cpu_us)} | {_num(cell.rss_mb)} | {one_line(cell.note)} |"
        )
    ratio = cpu_ratio(cells)
    if ratio is not None:
        lines += ["", f"Gateway vs LiteLLM CPU per {per}: **{ratio:,.1f}x less**."]
    return "\n".join(lines)


def cpu_ratio(cells: Sequence[Cell]) -> float | None:
    """LiteLLM's CPU per request over the gateway's, when both were timed."""
    by_target = {c.target: c for c in cells if c.status == OK}
    gateway, litellm = by_target.get("gateway"), by_target.get("litellm")
    if gateway is None or litellm is None or not gateway.cpu_us > 0:
        return None
    return litellm.cpu_us / gateway.cpu_us


def _stat(values: Mapping[str, object], key: str) -> float:
    value = values.get(key)
    return float(value) if isinstance(value, int | float) else math.nan


def probe_table(probes: Sequence[ProbeResult], streams: int) -> str:
    """The 500-stream probe: first frame, extra gap over the pacing, stalls, failures."""
    lines = [
        f"### {streams} concurrent streams, upstream paced at 20 ms per chunk",
        "",
        "| target | ok streams | first frame p50 / p99 / max ms | extra gap p50 / p99 / max ms "
        "| stalls (> 50 ms) | CPU µs/stream | RSS MB | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for probe in sorted(probes, key=lambda p: TARGET_ORDER.index(p.target)):
        if probe.status != OK and not probe.report:
            lines.append(f"| {probe.target} | {probe.status} | | | | | | {one_line(probe.note)} |")
            continue
        r = probe.report
        first = " / ".join(_ms(_stat(r, f"ttfb_{q}_ms")) for q in ("p50", "p99", "max"))
        gaps = " / ".join(_ms(_stat(r, f"extra_gap_{q}_ms")) for q in ("p50", "p99", "max"))
        lines.append(
            f"| {probe.target} | {r.get('ok')}/{r.get('streams')} | {first} | {gaps} | {r.get('stalls')} "
            f"| {_cpu(probe.cpu_us_per_stream)} | {_num(probe.rss_mb)} | {one_line(probe.note)} |"
        )
    return "\n".join(lines)


def targets_table(infos: Sequence[TargetInfo]) -> str:
    """Idle RSS, idle CPU and RSS at the end of the session, per target."""
    lines = [
        "| target | idle RSS MB | idle CPU % | RSS at the end MB | note |",
        "|---|---:|---:|---:|---|",
    ]
    for info in sorted(infos, key=lambda i: TARGET_ORDER.index(i.name)):
        status = "" if info.status == OK else f"{info.status}: "
        lines.append(
            f"| {info.name} | {_num(info.idle_rss_mb)} | {_num(info.idle_cpu_pct, 1)} "
            f"| {_num(info.end_rss_mb)} | {status}{one_line(info.note)} |"
        )
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "FAIL")


def goals(
    cells: Mapping[tuple[str, str], Cell], probes: Sequence[ProbeResult], infos: Sequence[TargetInfo]
) -> list[Goal]:
    """The issue's targets for one gateway worker on one core, against this run's numbers."""

    def cell(scenario: str, target: str) -> Cell | None:
        found = cells.get((scenario, target))
        return found if found is not None and found.status == OK else None

    result: list[Goal] = []
    chat64, lite64 = cell("chat-c64", "gateway"), cell("chat-c64", "litellm")
    if chat64:
        result.append(
            Goal(
                "CPU per chat request at 64 connections ≤ 250 µs",
                f"{_cpu(chat64.cpu_us)} µs",
                _verdict(chat64.cpu_us <= 250),
            )
        )
        result.append(
            Goal(
                "chat req/s on one core at 64 connections ≥ 4,000",
                _num(chat64.rps),
                _verdict(chat64.rps >= 4000),
            )
        )
    else:
        result.append(Goal("chat at 64 connections", "not measured", "FAIL"))
    if chat64 and lite64:
        ratio = lite64.cpu_us / chat64.cpu_us
        result.append(
            Goal(
                "≥ 40x less CPU than LiteLLM (chat, 64 connections)", f"{ratio:,.1f}x", _verdict(ratio >= 40)
            )
        )
    else:
        result.append(Goal("≥ 40x less CPU than LiteLLM", "LiteLLM not measured", "n/a"))
    for surface in ("chat", "responses"):
        gateway, direct = cell(f"{surface}-c1", "gateway"), cell(f"{surface}-c1", "direct")
        if gateway and direct:
            added = gateway.p99_ms - direct.p99_ms
            # What a bare proxy adds on the same machine in the same run: the machine's own tail.
            nginx = cell(f"{surface}-c1", "nginx")
            context = f" (nginx adds {nginx.p99_ms - direct.p99_ms:.2f} ms)" if nginx else ""
            result.append(
                Goal(
                    f"added p99 at one connection ≤ 1 ms ({surface})",
                    f"{added:.2f} ms{context}",
                    _verdict(added <= 1.0),
                )
            )
    stream = cell("chat-stream-c16", "gateway")
    if stream:
        result.append(
            Goal(
                "CPU per 21-chunk chat stream ≤ 1 ms",
                f"{_cpu(stream.cpu_us)} µs",
                _verdict(stream.cpu_us <= 1000),
            )
        )
    responses64 = cell("responses-c64", "gateway")
    if chat64 and responses64:
        over = responses64.cpu_us / chat64.cpu_us - 1
        result.append(
            Goal(
                "/v1/responses CPU within 20% of chat (64 connections)",
                f"{over:+.0%}",
                _verdict(over <= 0.20),
            )
        )
    probe = next((p for p in probes if p.target == "gateway"), None)
    if probe is not None and probe.report:
        r = probe.report
        extra = r.get("extra_gap_max_ms")
        ok = r.get("ok") == r.get("streams") and r.get("stalls") == 0
        ok = ok and isinstance(extra, int | float) and extra <= 50
        result.append(
            Goal(
                f"{r.get('streams')} paced streams: all complete, no chunk delayed > 50 ms",
                f"{r.get('ok')}/{r.get('streams')} ok, max extra gap {_ms(float(extra or 0))} ms, "
                f"{r.get('stalls')} stalls",
                _verdict(bool(ok)),
            )
        )
    gateway_info = next((i for i in infos if i.name == "gateway"), None)
    if gateway_info is not None and not math.isnan(gateway_info.idle_rss_mb):
        result.append(
            Goal(
                "idle RSS per worker ≤ 120 MB",
                f"{_num(gateway_info.idle_rss_mb)} MB",
                _verdict(gateway_info.idle_rss_mb <= 120),
            )
        )
    return result


def soak_table(samples: Sequence[SoakSample]) -> str:
    """The gateway's RSS along the soak (the first row is before it)."""
    lines = ["| after s | RSS MB | req/s | CPU µs/req | errors |", "|---:|---:|---:|---:|---:|"]
    lines += [
        f"| {s.seconds:,.0f} | {s.rss_mb:.1f} | {_num(s.rps)} | {_cpu(s.cpu_us)} | {s.errors} |"
        for s in samples
    ]
    return "\n".join(lines)


def soak_goal(samples: Sequence[SoakSample]) -> Goal:
    """RSS flat within ±10% from the end of the first loaded slice to the end of the soak."""
    loaded = samples[1:]
    minutes = samples[-1].seconds / 60
    if len(loaded) < 2:
        return Goal("RSS flat (±10%) over a load soak", "soak too short", "n/a")
    start, end = loaded[0].rss_mb, loaded[-1].rss_mb
    peak = max(s.rss_mb for s in loaded)
    drift = max(abs(end - start), abs(peak - start)) / start
    measured = f"{start:.0f} → {end:.0f} MB (peak {peak:.0f}), {drift:.0%}"
    return Goal(f"RSS flat (±10%) over a {minutes:.0f}-minute soak", measured, _verdict(drift <= 0.10))


SCALE_WORKERS = 2  # the worker count of the scale-out step (bench/run.py)


def _busy_cores(cell: Cell) -> float:
    """How many cores the target's processes kept busy during the run, on average."""
    return cell.cpu_us * cell.rps / 1e6


def scaling_table(cells: Sequence[Cell]) -> str:
    """One worker alone on core 0, one worker and ``--workers 2`` on both cores, chat at 64 connections."""
    lines = [
        "### chat, c64, mock: one worker against `--workers 2`",
        "",
        "| target | req/s | p50 ms | p99 ms | CPU µs/req | busy cores | req/s per busy core | RSS MB "
        "| note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for cell in sorted(cells, key=lambda c: c.target):
        if cell.status != OK:
            lines.append(f"| {cell.target} | {cell.status} | | | | | | | {one_line(cell.note)} |")
            continue
        busy = _busy_cores(cell)
        per_core = cell.rps / busy if busy else math.nan
        lines.append(
            f"| {cell.target} | {_num(cell.rps)} | {_ms(cell.p50_ms)} | {_ms(cell.p99_ms)} "
            f"| {_cpu(cell.cpu_us)} | {busy:.2f} | {_num(per_core)} | {_num(cell.rss_mb)} "
            f"| {one_line(cell.note)} |"
        )
    lines += [
        "",
        "*gateway* is pinned to core 0; *gateway-w1* (one worker) and *gateway-w2* (`--workers 2`) to "
        "cores 0 and 1, where wrk and the mock also run, so req/s cannot double here. *busy cores* is CPU "
        "per request times req/s; a shared bottleneck (a lock, SQLite write contention, one process doing "
        "everyone's work) would show as more CPU per request for *gateway-w2* than for *gateway-w1* on the "
        "same cores, or as idle cores while requests wait.",
    ]
    return "\n".join(lines)


def _per_busy_core(cell: Cell) -> float:
    return cell.rps / _busy_cores(cell)


def scaling_goal(cells: Sequence[Cell]) -> Goal:
    """``--workers 2`` serves as many requests per busy core as one worker on the same cores
    (within 10%); without that control (older results), as one worker alone on core 0."""
    by_target = {c.target: c for c in cells if c.status == OK and _busy_cores(c)}
    title = "`--workers 2` scales: req/s per busy core within 10% of one worker"
    many = by_target.get(f"gateway-w{SCALE_WORKERS}")
    alone = by_target.get("gateway")
    control = by_target.get("gateway-w1", alone)
    if many is None or control is None:
        return Goal(title, "not measured", "FAIL")
    efficiency = _per_busy_core(many) / _per_busy_core(control)
    measured = f"{_num(many.rps)} req/s on {_busy_cores(many):.2f} busy cores"
    if alone is not None:
        measured += f" = {many.rps / alone.rps:.2f}x one worker"
    if control is alone:
        measured += f"; per core {efficiency:.0%}"
    else:
        measured += f"; per core {efficiency:.0%} of one worker on the same cores"
        if alone is not None:
            measured += f" ({_per_busy_core(many) / _per_busy_core(alone):.0%} of one alone on core 0)"
    return Goal(title, measured, _verdict(efficiency >= 0.9))


def goals_table(rows: Sequence[Goal]) -> str:
    lines = ["| goal (one gateway worker, one core) | measured | |", "|---|---:|---|"]
    lines += [f"| {g.goal} | {g.measured} | {g.verdict} |" for g in rows]
    return "\n".join(lines)


def markdown(
    meta: Mapping[str, str],
    tables: Sequence[str],
    goals_md: str,
    targets_md: str,
    probe_md: str | None,
    soak_md: str | None = None,
    scaling_md: str | None = None,
) -> str:
    """The whole docs/performance.md."""
    parts = [
        "# Performance",
        "",
        "Generated by the benchmark harness in `bench/` (see `bench/README.md`); do not edit by hand.",
        "",
        f"- Command: `{meta['command']}` (ran `{meta['argv']}`)",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['cpu']}, {meta['nproc']} cores, {meta['memory']}, Linux {meta['kernel']}",
        f"- Database: {meta.get('database', 'a fresh SQLite file per gateway')}",
        f"- Versions: gateway {meta['gateway']}, Python {meta['python']}, LiteLLM {meta['litellm']}, "
        f"nginx {meta['nginx']}, wrk {meta['wrk']}",
        f"- Each cell: {meta['duration']} s of wrk after a {meta['warmup']} s warm-up, "
        f"{meta['rounds']} round(s), median shown; targets interleaved per scenario"
        + (
            f"; {meta['goal_rounds']} rounds for chat and responses at one connection and the scale-out step"
            if meta.get("goal_rounds", meta["rounds"]) != meta["rounds"]
            else ""
        ),
        "",
        "## Goals",
        "",
        goals_md,
        "",
        "## Targets at rest",
        "",
        targets_md,
        "",
        "## Scenarios",
        "",
    ]
    for table in tables:
        parts += [table, ""]
    if probe_md:
        parts += [
            "## Many streams",
            "",
            probe_md,
            "",
            "*extra gap* is the time between two consecutive chunks of one stream minus the "
            "mock's 20 ms pacing; *first frame* is from sending the request to the first SSE "
            "frame. The probe runs on core 1 with the mock, so part of the extra gap is the "
            "probe's own scheduling: compare with *direct*.",
            "",
        ]
    if scaling_md:
        parts += ["## Scale-out", "", scaling_md, ""]
    if soak_md:
        parts += ["## Soak", ""]
        if meta.get("soak_from"):
            origin = meta["soak_from"]
            parts += [f"Chat at 64 connections against the gateway alone, in a run of its own: {origin}.", ""]
        parts += [soak_md, ""]
    parts += [HOW_TO_READ, ""]
    return "\n".join(parts)
