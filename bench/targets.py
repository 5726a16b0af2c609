"""The four things the bench measures, and how each is started.

- ``direct``: wrk straight to the mock (the floor; its CPU is the mock's own).
- ``nginx``: an nginx reverse proxy in front of the mock (what a bare proxy costs).
- ``litellm``: LiteLLM's proxy, no database, no callbacks (the peer).
- ``gateway``: this project, with a paid model, so auth, reserve, settle, ledger and record run.

Targets under test are pinned to core 0; the mock, wrk and the probe to core 1.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

import configs
from procs import Proc, ProcessSet, StartError, wait_http
from results import one_line
from scenarios import Scenario

TARGET_CORE = 0
LOAD_CORE = 1
BENCH_DIR = Path(__file__).resolve().parent
LITELLM_BIN = BENCH_DIR / ".peers" / "litellm" / "bin" / "litellm"


@dataclass
class Target:
    """One target: where it listens, which process tree to measure, how to address it."""

    name: str
    port: int
    proc: Proc | None
    routes_by_model: bool  # gateway and LiteLLM pick the upstream by model; the proxies by path
    key: str | None = None
    billed: bool = False  # answers carry the gateway's usage.cost
    unavailable: str | None = None  # why it could not be started
    idle_rss: int = 0
    idle_cpu_pct: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    def url(self, scenario: Scenario) -> str:
        path = scenario.api_path if self.routes_by_model else scenario.prefix + scenario.api_path
        return f"http://127.0.0.1:{self.port}{path}"


def _nginx(procs: ProcessSet, name: str, prefix: Path, conf: Path, core: int) -> Proc:
    argv = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise StartError(f"{name}: nginx rejects its config: {check.stderr.strip()}")
    return procs.start(name, argv, core=core, log=prefix / "stdout.log")


def start_mock(procs: ProcessSet, run_dir: Path, port: int) -> Proc:
    """The nginx mock upstream on ``LOAD_CORE``."""
    prefix = run_dir / "mock"
    proc = _nginx(procs, "mock", prefix, configs.write_mock_conf(prefix, port), LOAD_CORE)
    wait_http(proc, f"http://127.0.0.1:{port}/", timeout=15)
    return proc


def direct_target(mock: Proc, mock_port: int) -> Target:
    return Target("direct", mock_port, mock, routes_by_model=False)


def start_nginx_proxy(procs: ProcessSet, run_dir: Path, port: int, mock_port: int) -> Target:
    prefix = run_dir / "nginx-proxy"
    proc = _nginx(procs, "nginx", prefix, configs.write_proxy_conf(prefix, port, mock_port), TARGET_CORE)
    wait_http(proc, f"http://127.0.0.1:{port}/", timeout=15)
    return Target("nginx", port, proc, routes_by_model=False)


def start_litellm(procs: ProcessSet, run_dir: Path, port: int, mock_port: int) -> Target:
    """LiteLLM's proxy (one uvicorn worker), or an unavailable target saying why not."""
    if not LITELLM_BIN.exists():
        return Target("litellm", port, None, True, unavailable="not installed (run bench/setup.sh)")
    directory = run_dir / "litellm"
    conf = configs.write_litellm_conf(directory, mock_port)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST")}
    # LiteLLM refuses to start without a master key; with one (and no database) it checks the
    # bearer key against it, the cheapest auth it has, and the gateway authenticates too.
    master_key = f"sk-{secrets.token_hex(24)}"
    env.update(
        LITELLM_MASTER_KEY=master_key,
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the price map from the internet
        LITELLM_LOG="ERROR",
        LITELLM_TELEMETRY="False",
        DISABLE_SCHEMA_UPDATE="True",
    )
    argv = [str(LITELLM_BIN), "--config", str(conf), "--host", "127.0.0.1", "--port", str(port)]
    proc = procs.start(
        "litellm",
        [*argv, "--num_workers", "1"],
        core=TARGET_CORE,
        log=directory / "litellm.log",
        env=env,
        cwd=directory,
    )
    try:
        wait_http(proc, f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    except StartError:
        last = proc.log_tail(1)
        procs.stop(proc)
        return Target(
            "litellm", port, None, True, unavailable=f"did not start: {one_line(last)} (see litellm.log)"
        )
    return Target("litellm", port, proc, routes_by_model=True, key=master_key)


def _gateway_cli(gateway_bin: Path, conf: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(gateway_bin), *args, "--config", str(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise StartError(
            f"aistats-gateway {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout


def start_gateway(
    procs: ProcessSet,
    run_dir: Path,
    port: int,
    mock_port: int,
    gateway_bin: Path,
    *,
    name: str = "gateway",
    source: Path | None = None,
    workers: int = 1,
    cores: str = str(TARGET_CORE),
    database_url: str | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Target:
    """A fresh gateway (new SQLite data dir), a key and credits for ``default``, one worker.

    ``workers`` and ``cores`` (a ``taskset`` list) are for the scale-out step. ``source`` runs
    the package from another checkout's ``src`` (``PYTHONPATH`` comes before the venv's editable
    install): the ``base`` target, an older commit measured in the same session.
    ``database_url`` (a fresh, empty database) replaces the SQLite file; ``extra_env`` is added
    to the gateway's environment (the ``gateway-otel`` target's trace exporter).
    """
    directory = run_dir / name
    shutil.rmtree(directory / "data", ignore_errors=True)
    conf = configs.write_gateway_conf(directory, mock_port)
    env = {**os.environ, "AISTATS_DATA_DIR": str(directory / "data")}
    if database_url is not None:
        env["AISTATS_DATABASE_URL"] = database_url
    if source is not None:
        env["PYTHONPATH"] = str(source)
    env.update(extra_env or {})
    created = orjson.loads(
        _gateway_cli(gateway_bin, conf, env, "keys", "create", "--json", "--name", "bench")
    )
    _gateway_cli(gateway_bin, conf, env, "credits", "grant", "--workspace", "default", "--usd", "1000000")
    argv = [str(gateway_bin), "serve", "--config", str(conf), "--port", str(port), "--workers", str(workers)]
    proc = procs.start(name, argv, core=cores, log=directory / "gateway.log", env=env)
    wait_http(proc, f"http://127.0.0.1:{port}/v1/health", timeout=60)
    return Target(name, port, proc, routes_by_model=True, key=str(created["key"]), billed=True)
