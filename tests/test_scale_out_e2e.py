"""Several gateway instances on one Postgres database, and ``serve --workers N``."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.harness import Admin, GatewayServer, fake_provider_config, gateway_settings, wait_for
from tests.test_cli import _env, _free_port

PAID = "openai/gpt-4o-mini"


def test_two_instances_behind_a_round_robin_client_share_keys_wallet_and_records(
    tmp_path: Path, fake_server: FakeOpenAIServer, postgres_url: str
) -> None:
    fake_server.fake.default = Behaviour(prompt_tokens=100, completion_tokens=50)
    settings = gateway_settings(
        tmp_path, fake_provider_config(fake_server.base_url), database_url=postgres_url
    )
    admin = Admin(settings)
    key, kid = admin.create_key()
    workspace_id = admin.workspace_id()
    admin.grant(1_000_000_000)
    with GatewayServer(settings) as first, GatewayServer(settings) as second:
        clients = itertools.cycle([first.openai(key), second.openai(key)])
        ids = []
        for _ in range(20):
            raw = next(clients).chat.completions.with_raw_response.create(
                model=PAID, messages=[{"role": "user", "content": "hi"}]
            )
            ids.append(raw.headers["x-generation-id"])
        # A record written by one instance is visible through the other.
        for generation_id, client in zip(ids, clients, strict=False):
            assert client.get(f"/generations?id={generation_id}", cast_to=httpx.Response).status_code == 200
        # A revocation reaches both instances within a second.
        admin.run(lambda store: store.revoke_api_key(kid))
        for gateway in (first, second):
            wait_for(lambda g=gateway: _rejected(g.openai(key)), timeout=1.0, interval=0.05)

    one_cost = 100 * 150 + 50 * 600  # nano-USD: $0.15 and $0.60 per 1M tokens
    wallet = admin.run(lambda store: store.get_wallet(workspace_id))
    assert wallet.spent_total_nano == 20 * one_cost
    assert admin.run(lambda store: store.ledger_sum(workspace_id)) == wallet.balance_nano


def _rejected(client: openai.OpenAI) -> bool:
    try:
        client.get("/credits", cast_to=httpx.Response)
    except openai.AuthenticationError:
        return True
    return False


@pytest.mark.timeout(120)
def test_serve_with_two_workers_on_sqlite_answers_from_both_and_one_process_writes_every_record(
    tmp_path: Path, fake_server: FakeOpenAIServer
) -> None:
    """``serve --workers 2`` on SQLite: both workers serve, their records go through one writer
    process (docs/decisions/011), nothing is lost, the ledger balances, and the writer stops too."""
    fake_server.fake.default = Behaviour(prompt_tokens=100, completion_tokens=50)
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(fake_provider_config(fake_server.base_url)))
    port = _free_port()
    env = _env(tmp_path)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "aistats_gateway", *args, "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    key = cli("keys", "create").strip().splitlines()[-1]
    cli("credits", "grant", "--workspace", "default", "--usd", "10")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aistats_gateway",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    database = tmp_path / "data" / "gateway.db"
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        wait_for(lambda: _up(port), timeout=30, interval=0.2)
        assert _writer_processes(database), "serve started the SQLite writer process"
        workers = set()
        deadline = time.monotonic() + 20
        while len(workers) < 2 and time.monotonic() < deadline:
            # Fresh connections, so the kernel spreads them over both workers' accept queues.
            with httpx.Client() as http:
                workers.add(http.get(f"http://127.0.0.1:{port}/metrics").headers["x-aistats-worker"])
        assert len(workers) == 2, "both worker processes answered"
        answer = client.responses.create(model="google/gemma-3-27b:free", input="Reply with: two workers")
        assert answer.output_text == "two workers"

        def paid(index: int) -> str:
            # A new client per call: new connections land on both workers.
            with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0) as one:
                reply = one.chat.completions.create(
                    model=PAID, messages=[{"role": "user", "content": f"n{index}"}]
                )
            return reply.id

        with ThreadPoolExecutor(max_workers=16) as pool:
            ids = set(pool.map(paid, range(120)))
        assert len(ids) == 120
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    assert process.returncode == 0
    wait_for(lambda: not _writer_processes(database), timeout=10, interval=0.1)
    with sqlite3.connect(database) as db:
        stored = {row[0] for row in db.execute("SELECT id FROM generations WHERE model = ?", (PAID,))}
        charges = db.execute("SELECT count(*) FROM ledger_entries WHERE kind = 'charge'").fetchone()[0]
    assert stored == ids, "every paid generation was written, by the writer process, before serve exited"
    assert charges == 120
    check = subprocess.run(
        [sys.executable, "-m", "aistats_gateway", "ledger", "check", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def _writer_processes(database: Path) -> list[int]:
    """Live SQLite writer processes for ``database`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"aistats_gateway.store.sqlite_writer" in argv and str(database).encode() in argv:
            found.append(int(entry.name))
    return found


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200
    except httpx.TransportError:
        return False
