"""The gateway's ASGI app, served like ``aistats-gateway serve`` (uvicorn, uvloop, httptools, one
worker), wrapped to time every chat request from its arrival in the app to its last body byte.

For each request it records the wall time, the CPU time of the whole process (every thread) and
of the event-loop thread inside that window. At one connection nothing else of the client's is in
flight, so whatever else the process does inside a window (a usage batch, a refresh, a garbage
collection) is the gateway delaying that request; other processes on the machine are not counted
in the CPU columns. On SIGINT it prints percentiles as one JSON line. Run by ``bench/tail.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from aistats_gateway.app import create_app

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
TIMED_PATH = "/v1/chat/completions"
WARMUP_SHARE = 0.1  # the first tenth of the requests is left out

inner = create_app()
samples: list[tuple[float, float, float]] = []  # (wall, process CPU, loop-thread CPU) seconds


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http" or scope["path"] != TIMED_PATH:
        await inner(scope, receive, send)
        return
    wall, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()

    async def timed_send(message: Message) -> None:
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            samples.append(
                (
                    time.perf_counter() - wall,
                    time.process_time() - cpu,
                    time.thread_time() - loop_cpu,
                )
            )

    await inner(scope, receive, timed_send)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1e6 if ordered else float("nan")


def report() -> dict[str, float]:
    """Percentiles in µs of the three columns, warm-up left out."""
    kept = samples[int(len(samples) * WARMUP_SHARE) :]
    result: dict[str, float] = {"requests": len(kept)}
    for index, column in enumerate(("wall", "cpu", "loop_cpu")):
        values = [sample[index] for sample in kept]
        for share in (0.5, 0.99):
            result[f"{column}_p{share * 100:g}"] = round(percentile(values, share))
    return result


def main() -> None:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    try:
        uvicorn.Server(config).run()
    finally:
        print(json.dumps(report()), flush=True)


if __name__ == "__main__":
    main()
