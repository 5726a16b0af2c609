"""Many concurrent paced streams at once: does any chunk arrive late?

Opens ``--streams`` connections (default 500), each POSTing one streamed chat request to a
target whose upstream sends a chunk every ``--pacing`` seconds (the mock's ``/paced`` prefix),
and records when every SSE frame arrives. Reports the time to the first frame, the extra gap
between consecutive frames over the pacing (what the target added), stalls (extra > 50 ms),
and whether every stream ended properly with the canned text.

    python bench/stream_probe.py --url http://127.0.0.1:8080/v1/chat/completions --key K

Raw asyncio protocols (uvloop when installed) keep the probe's own cost per frame small; the
starts are spread over one pacing period so the frames of all streams are not in lockstep.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from scenarios import PROBE_SCENARIO, load_expected
from validate import Invalid, check_answer

STALL_MS = 50.0


class _HttpReader:
    """Incremental HTTP/1.1 response reader: status, then the body (chunked or not) as it comes."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.payload = bytearray()
        self.finished = False
        self._buffer = bytearray()
        self._chunked = False
        self._length = -1

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if self.status is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1").split("\r\n")
            del self._buffer[: end + 4]
            self.status = int(head[0].split()[1])
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            self._length = int(headers.get("content-length", "-1"))
        if not self._chunked:
            self.payload += self._buffer
            self._buffer.clear()
            self.finished = 0 <= self._length <= len(self.payload)
            return
        while not self.finished:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self._buffer[:line_end]).split(b";")[0], 16)
            if size == 0:
                self.finished = True
                return
            if len(self._buffer) < line_end + 2 + size + 2:
                return
            self.payload += self._buffer[line_end + 2 : line_end + 2 + size]
            del self._buffer[: line_end + 2 + size + 2]


@dataclass
class StreamTrace:
    """One stream: when it was sent, when each SSE frame arrived, and how it ended."""

    sent: float = 0.0
    frames: list[float] = field(default_factory=list)
    status: int | None = None
    complete: bool = False
    error: str | None = None
    payload: bytes = b""


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, request: bytes, trace: StreamTrace, done: asyncio.Future[None]) -> None:
        self._request = request
        self._trace = trace
        self._done = done
        self._reader = _HttpReader()
        self._scanned = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self._transport = cast(asyncio.Transport, transport)
        self._trace.sent = time.perf_counter()
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        reader = self._reader
        reader.feed(data)
        payload = reader.payload
        # A frame ends with a blank line; look only at what is new (and the byte before it).
        start = max(0, self._scanned - 1)
        while True:
            end = payload.find(b"\n\n", start)
            if end < 0:
                break
            self._trace.frames.append(now)
            start = end + 2
        self._scanned = max(len(payload), start)
        if reader.finished:
            self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._reader.finished:
            self._finish(f"connection closed early ({exc!r})")
        else:
            self._finish(None)

    def _finish(self, error: str | None) -> None:
        if self._done.done():
            return
        self._trace.status = self._reader.status
        self._trace.complete = self._reader.finished
        self._trace.payload = bytes(self._reader.payload)
        self._trace.error = error
        self._done.set_result(None)
        if self._transport is not None:
            self._transport.close()


async def _one(host: str, port: int, request: bytes, delay: float, trace: StreamTrace) -> None:
    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        await loop.create_connection(lambda: _StreamProtocol(request, trace, done), host, port)
    except OSError as exc:
        trace.error = f"connect failed: {exc!r}"
        return
    await done


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class ProbeReport:
    """The probe's summary (milliseconds)."""

    streams: int
    ok: int
    failed: int
    wrong: int
    frames_per_stream: float
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    ttfb_max_ms: float
    extra_gap_p50_ms: float
    extra_gap_p99_ms: float
    extra_gap_max_ms: float
    stalls: int
    seconds: float
    first_error: str | None


def summarize(traces: list[StreamTrace], pacing: float, seconds: float, *, billed: bool) -> ProbeReport:
    """Late frames, stalls and wrong answers over all streams."""
    expected = load_expected()
    ttfb: list[float] = []
    extra: list[float] = []
    errors: list[str] = []
    ok = wrong = 0
    for trace in traces:
        if trace.error or not trace.complete or trace.status != 200:
            detail = trace.payload[:200].decode(errors="replace")
            errors.append(trace.error or f"HTTP {trace.status}: {detail}")
            continue
        try:
            check_answer(trace.status, trace.payload.decode(), PROBE_SCENARIO, expected, billed=billed)
        except Invalid as exc:
            wrong += 1
            errors.append(str(exc))
            continue
        ok += 1
        ttfb.append((trace.frames[0] - trace.sent) * 1000)
        extra.extend((b - a - pacing) * 1000 for a, b in zip(trace.frames, trace.frames[1:], strict=False))
    frames = [len(t.frames) for t in traces if t.complete]
    return ProbeReport(
        streams=len(traces),
        ok=ok,
        failed=len(traces) - ok - wrong,
        wrong=wrong,
        frames_per_stream=statistics.fmean(frames) if frames else 0.0,
        ttfb_p50_ms=_percentile(ttfb, 0.5),
        ttfb_p99_ms=_percentile(ttfb, 0.99),
        ttfb_max_ms=max(ttfb, default=float("nan")),
        extra_gap_p50_ms=_percentile(extra, 0.5),
        extra_gap_p99_ms=_percentile(extra, 0.99),
        extra_gap_max_ms=max(extra, default=float("nan")),
        stalls=len([value for value in extra if value > STALL_MS]),
        seconds=seconds,
        first_error=errors[0] if errors else None,
    )


async def probe(
    url: str, *, key: str | None, streams: int, pacing: float, timeout: float, billed: bool
) -> ProbeReport:
    """Run ``streams`` concurrent streamed requests against ``url`` and summarize them."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = PROBE_SCENARIO.body()
    head = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if key:
        head.append(f"Authorization: Bearer {key}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    traces = [StreamTrace() for _ in range(streams)]
    started = time.perf_counter()
    tasks = [
        asyncio.ensure_future(_one(host, port, request, pacing * index / streams, trace))
        for index, trace in enumerate(traces)
    ]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    for trace in traces:
        if not trace.complete and trace.error is None:
            trace.error = f"not finished within {timeout:g}s"
    return summarize(traces, pacing, time.perf_counter() - started, billed=billed)


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: a statistic over no values is null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the streaming chat endpoint to probe")
    parser.add_argument("--key", default=None, help="bearer key (the gateway's)")
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--pacing", type=float, default=0.02, help="the upstream's seconds between chunks")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on the whole probe, seconds")
    parser.add_argument("--billed", action="store_true", help="also check the gateway's usage.cost")
    args = parser.parse_args(argv)
    work = probe(
        args.url,
        key=args.key,
        streams=args.streams,
        pacing=args.pacing,
        timeout=args.timeout,
        billed=args.billed,
    )
    try:
        import uvloop
    except ImportError:
        report = asyncio.run(work)
    else:
        report = uvloop.run(work)
    print(json.dumps({k: _finite_or_none(v) for k, v in asdict(report).items()}))
    return 0 if report.ok == report.streams else 1


if __name__ == "__main__":
    raise SystemExit(main())
