"""Two gateway processes sharing Postgres and Redis never overspend one wallet.

Each request's hold equals its actual cost (input is free, the fake answers exactly
``max_tokens`` output tokens), so a wallet that covers 80 requests can serve at most 80.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.conftest import require_service
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.harness import TEST_PEPPER, Admin, fake_provider_config, gateway_settings, wait_for
from tests.test_cli import _env, _free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
PAID = "openai/gpt-4o-mini"
OUTPUT_TOKENS = 10
ONE_REQUEST = OUTPUT_TOKENS * 1_000  # nano-USD at $1 per 1M output tokens, input free
COVERED = 80
CONCURRENT = 200
SERVE = [sys.executable, "-m", "aistats_gateway", "serve"]


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def gateways(
    tmp_path: Path, fake_server: FakeOpenAIServer, postgres_url: str
) -> Iterator[tuple[list[int], Admin, Callable[[], None]]]:
    """Two `aistats-gateway serve` processes on one Postgres database and one Redis."""
    require_service("Redis", "127.0.0.1", 6379)
    config = fake_provider_config(fake_server.base_url, price={"input": "0", "output": "1"})
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    settings = gateway_settings(tmp_path, config, database_url=postgres_url, redis_url=REDIS_URL)
    env = {
        **_env(tmp_path),
        "AISTATS_DATABASE_URL": postgres_url,
        "AISTATS_REDIS_URL": REDIS_URL,
        "AISTATS_KEY_PEPPER": TEST_PEPPER,
    }
    ports = [_free_port(), _free_port()]
    processes = [
        subprocess.Popen(
            [*SERVE, "--config", str(config_path), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"gateway-{port}.log").open("w"),
            start_new_session=True,
        )
        for port in ports
    ]

    def stop() -> None:
        """SIGINT both (each drains its writer and sends its last settlements), then wait."""
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # never leave a hung gateway behind
                os.killpg(process.pid, signal.SIGKILL)
                raise

    try:
        for port in ports:
            wait_for(lambda p=port: _up(p), timeout=30, interval=0.2)
        yield ports, Admin(settings), stop
    finally:
        stop()


async def _fire(ports: list[int], key: str, errors: list[str]) -> list[int]:
    clients = [
        openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=30)
        for port in ports
    ]

    async def one(i: int) -> int:
        try:
            await clients[i % 2].chat.completions.create(
                model=PAID, messages=[{"role": "user", "content": "hi"}], max_tokens=OUTPUT_TOKENS
            )
        except openai.APIStatusError as error:
            if error.status_code != 402:
                errors.append(f"{error.status_code}: {error.message}")
            return error.status_code
        return 200

    try:
        return list(await asyncio.gather(*(one(i) for i in range(CONCURRENT))))
    finally:
        for client in clients:
            await client.close()


@pytest.mark.timeout(120)
def test_two_processes_never_serve_more_than_the_wallet_covers(
    gateways: tuple[list[int], Admin, Callable[[], None]], fake_server: FakeOpenAIServer
) -> None:
    ports, admin, stop = gateways
    # A fresh workspace, so its Redis wallet starts from the database.
    workspace = f"shared-{uuid.uuid4().hex[:8]}"
    key, _ = admin.create_key(workspace)
    workspace_id = admin.workspace_id(workspace)
    admin.grant(COVERED * ONE_REQUEST, workspace)
    fake_server.fake.default = Behaviour(prompt_tokens=7, completion_tokens=OUTPUT_TOKENS, delay=0.2)
    # The grant reaches both processes through their refreshers.
    wait_for(lambda: all(_available(port, key) == COVERED * ONE_REQUEST for port in ports), timeout=5)

    errors: list[str] = []
    statuses = asyncio.run(_fire(ports, key, errors))

    assert set(statuses) <= {200, 402}, errors
    served = statuses.count(200)
    assert served == COVERED
    # /v1/credits on either instance shows the shared balance: nothing left, nothing held.
    wait_for(lambda: all(_available(port, key) == 0 for port in ports), timeout=5)
    stop()  # each process drains its writer: the database has every record
    wallet = admin.run(lambda store: store.get_wallet(workspace_id))
    assert wallet.balance_nano == 0
    assert wallet.spent_total_nano == served * ONE_REQUEST
    assert admin.run(lambda store: store.ledger_sum(workspace_id)) == wallet.balance_nano
    ledger = admin.run(lambda store: store.list_ledger(workspace_id))
    assert sum(1 for entry in ledger if entry["kind"] == "charge") == served


def _available(port: int, key: str) -> int | None:
    answer = httpx.get(
        f"http://127.0.0.1:{port}/v1/credits", headers={"authorization": f"Bearer {key}"}, timeout=2
    )
    return int(answer.json()["nanos"]["available"]) if answer.status_code == 200 else None
