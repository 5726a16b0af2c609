"""The gateway's own tail at one connection, robust to a noisy machine.

    .venv/bin/python bench/tail.py                                  # this checkout, 3 rounds of 8 s
    .venv/bin/python bench/tail.py --base /tmp/base/src --rounds 5  # against another checkout
    .venv/bin/python bench/tail.py --variant nobatch=/tmp/nobatch/src --variant y4=/tmp/y4/src

wrk's p99 at one connection includes everything else the machine runs on the gateway's core.
This runs the gateway through ``bench/tail_server.py``, which records per chat request the CPU
the gateway process spent between the request's arrival in the app and its last byte (all
threads, then the event-loop thread alone). *p99 - p50* of that CPU is what the gateway's own
background work (usage batches, refreshes, GC) adds to the slowest 1 % of requests; other
processes do not count. Each variant is started fresh per round (a new data dir), pinned to core
0 with the nginx mock and wrk on core 1, and the variants are interleaved; medians are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import orjson

import configs
import targets as tg
from procs import Proc, ProcessSet, free_port, wait_http
from scenarios import Scenario
from wrkrun import run_wrk

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
GATEWAY_BIN = Path(sys.executable).parent / "aistats-gateway"


def _prepare(directory: Path, mock_port: int, source: Path) -> tuple[dict[str, str], str]:
    """A fresh data dir with a key and credits; the environment that runs ``source``."""
    shutil.rmtree(directory / "data", ignore_errors=True)
    conf = configs.write_gateway_conf(directory, mock_port)
    env = {**os.environ, "AISTATS_DATA_DIR": str(directory / "data"), "AISTATS_CONFIG": str(conf),
           "PYTHONPATH": str(source)}  # fmt: skip

    def cli(*args: str) -> str:
        done = subprocess.run([str(GATEWAY_BIN), *args, "--config", str(conf)], env=env,
                              capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        return done.stdout

    key = str(orjson.loads(cli("keys", "create", "--json", "--name", "tail"))["key"])
    cli("credits", "grant", "--workspace", "default", "--usd", "1000000")
    return env, key


def one_round(procs: ProcessSet, name: str, directory: Path, mock_port: int, source: Path,
              body: Path, seconds: float) -> dict[str, float]:  # fmt: skip
    env, key = _prepare(directory, mock_port, source)
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "tail_server.py"), str(port)]
    proc: Proc = procs.start(name, argv, core=tg.TARGET_CORE, log=directory / "tail.log", env=env)
    wait_http(proc, f"http://127.0.0.1:{port}/v1/health", timeout=60)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    run_wrk(url, body_file=body, key=key, connections=1, duration=1, core=tg.LOAD_CORE)  # warm-up
    result, _ = run_wrk(url, body_file=body, key=key, connections=1, duration=seconds, core=tg.LOAD_CORE)
    os.killpg(proc.pid, signal.SIGINT)
    proc.popen.wait(timeout=60)
    reports = [line for line in (directory / "tail.log").read_text().splitlines() if line.startswith("{")]
    stats = json.loads(reports[-1])  # this round's (the log is appended to)
    stats["wrk_p99"] = round(result.p99_ms * 1000)
    return dict(stats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="also run the gateway from this src dir, interleaved")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="also run the gateway from this src dir under NAME (repeatable)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {tg.LOAD_CORE})
    variants = {"gateway": ROOT / "src"}
    if args.base is not None:
        variants["base"] = args.base
    for spec in args.variant:
        name, _, source = spec.partition("=")
        if not name or not source:
            parser.error(f"--variant wants NAME=SRC, got {spec!r}")
        variants[name] = Path(source)
    run_dir = BENCH_DIR / "results" / "tail"
    run_dir.mkdir(parents=True, exist_ok=True)
    body = run_dir / "chat.json"
    body.write_bytes(Scenario("chat", stream=False, slow=False, connections=1).body())
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with ProcessSet() as procs:
        mock_port = free_port()
        tg.start_mock(procs, run_dir, mock_port)
        for index in range(args.rounds):
            for name, source in variants.items():
                stats = one_round(procs, name, run_dir / name, mock_port, source, body, args.seconds)
                rows[name].append(stats)
                print(f"round {index + 1} {name:8} {stats}", flush=True)
    print("\nmedians, µs (cpu: the whole process in the request's window; loop_cpu: its event-loop thread)")
    for name, stats in rows.items():
        medians = {key: statistics.median(s[key] for s in stats) for key in stats[0]}
        medians["cpu_p99-p50"] = medians["cpu_p99"] - medians["cpu_p50"]
        print(f"{name:8} " + "  ".join(f"{key} {value:,.0f}" for key, value in medians.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
